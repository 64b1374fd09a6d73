"""Prometheus metrics every stage exposes at /metrics: what it did with each entry, how long it
took, and how much work waits in the streams."""

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.janitor import group_lag
from shared.streams import STAGES

logger = logging.getLogger("newsflow.metrics")

# One registry a process: each process is one replica of one stage.
REGISTRY = CollectorRegistry()

ENTRIES = Counter(
    "newsflow_entries_total",
    "Entries a stage finished, by outcome: processed, retried (a transient failure that will be "
    "tried again), dead (sent to articles:dead).",
    ["stage", "outcome"],
    registry=REGISTRY,
)
PROCESSING = Histogram(
    "newsflow_processing_seconds",
    "Time a stage spent on one entry (decoding, the work, publishing the result).",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
LAG = Gauge(
    "newsflow_stream_lag",
    "Entries of a stream that its group has not read yet.",
    ["stream", "group"],
    registry=REGISTRY,
)
PENDING = Gauge(
    "newsflow_stream_pending",
    "Entries a group has read but not acknowledged (in work, failed or held by a dead replica).",
    ["stream", "group"],
    registry=REGISTRY,
)
LENGTH = Gauge(
    "newsflow_stream_length", "Entries in a stream.", ["stream"], registry=REGISTRY
)

# Pre-create the series so they are exported (as 0) before the first entry.
for _stage in ("fetcher", "parser", "enricher", "indexer"):
    for _outcome in ("processed", "retried", "dead"):
        ENTRIES.labels(_stage, _outcome)


async def sample_streams(client: aioredis.Redis) -> None:
    """Set the stream gauges from Redis (length, and per group its lag and pending)."""
    for stream in STAGES:
        if not await client.exists(stream.name):
            continue
        LENGTH.labels(stream.name).set(int(await client.xlen(stream.name)))
        groups: Any = await client.xinfo_groups(stream.name)
        for group in groups:
            name = group["name"].decode()
            LAG.labels(stream.name, name).set(await group_lag(client, stream.name, group))
            PENDING.labels(stream.name, name).set(int(group["pending"]))


async def run_sampler(client: aioredis.Redis, every_s: float = 5.0) -> None:
    """Keep the stream gauges fresh in the background."""
    while True:
        try:
            await sample_streams(client)
        except Exception:
            # Metrics must never take a stage down (Redis may be restarting).
            logger.debug("could not sample the streams", exc_info=True)
        await asyncio.sleep(every_s)
