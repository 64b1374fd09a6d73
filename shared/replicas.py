"""Which replicas are running and where each serves /metrics: a heartbeat key per replica that
expires soon after the replica stops, so `newsflow status` lists live replicas only."""

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared import keys

logger = logging.getLogger("newsflow.replicas")

EVERY_S = 5.0
"""How often a replica renews its heartbeat."""
TTL_S = 15
"""How long a heartbeat outlives its last renewal: a replica killed outright drops out then."""


@dataclass(frozen=True)
class Replica:
    """A running replica as it announces itself."""

    consumer: str
    stage: str
    metrics: str
    """host:port of its /health and /metrics."""
    pid: int


async def heartbeat(client: aioredis.Redis, stage: str, consumer: str, metrics: str) -> None:
    """Announce this replica until cancelled; then withdraw the announcement."""
    key = keys.replica(consumer)
    value = json.dumps({"stage": stage, "metrics": metrics, "pid": os.getpid()})
    try:
        while True:
            try:
                await client.set(key, value, ex=TTL_S)
            except Exception:
                # A missed heartbeat only hides the replica from `status` for a while; it must
                # never stop the stage (Redis may be restarting).
                logger.debug("could not renew the heartbeat", exc_info=True)
            await asyncio.sleep(EVERY_S)
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.4):
                await client.delete(key)


async def live_replicas(client: aioredis.Redis) -> dict[str, Replica]:
    """Consumer name → the replica, for every replica whose heartbeat is current."""
    names: list[Any] = [name async for name in client.scan_iter(keys.REPLICA_PREFIX + "*",
                                                                count=500)]
    if not names:
        return {}
    values: Any = await client.mget(names)
    found = {}
    for name, value in zip(names, values, strict=True):
        if value is None:
            continue  # expired between the scan and the read
        consumer = (name.decode() if isinstance(name, bytes) else name)[len(keys.REPLICA_PREFIX):]
        data = json.loads(value)
        found[consumer] = Replica(consumer, str(data["stage"]), str(data["metrics"]),
                                  int(data["pid"]))
    return found
