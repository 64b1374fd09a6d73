"""`newsflow status` counts the replicas that run, not every consumer a group remembers, and says
where each serves its metrics and how long it has been idle."""

import asyncio
import contextlib

import pytest
from redis.asyncio import Redis

from services.cli import pipeline
from shared import keys, replicas
from shared.broker import ensure_groups
from shared.streams import FETCHED, INDEXED, MATCHED


async def test_status_counts_live_replicas_only(redis_client: Redis,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, {"n": "1"})
    # Two consumers in the parser group: one whose replica announces itself, one gone.
    await redis_client.xreadgroup("parser", "host-1", {FETCHED.name: ">"}, count=1)
    # Made explicitly: before Redis 7.2 a read that delivers nothing makes no consumer.
    await redis_client.xgroup_createconsumer(FETCHED.name, "parser", "host-2")
    beat = asyncio.create_task(replicas.heartbeat(redis_client, "parser", "host-1",
                                                  "127.0.0.1:9002"))
    try:
        await asyncio.sleep(0.2)
        # A consumer with no heartbeat counts only while it has read within LIVE_IDLE_MS.
        assert [r.consumer for r in await pipeline.live_consumers(redis_client)] == [
            "host-1", "host-2"]
        monkeypatch.setattr(pipeline, "LIVE_IDLE_MS", 0)
        [live] = await pipeline.live_consumers(redis_client)
        assert (live.stage, live.consumer, live.metrics, live.pending) == (
            "parser", "host-1", "127.0.0.1:9002", 1)
        assert 0 <= live.idle_s < 5
        row = next(r for r in await pipeline.status(redis_client) if r.group == "parser")
        assert row.consumers == 1 and row.pending == 1
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    # A replica that stops withdraws its heartbeat: it is no longer counted.
    assert not await redis_client.exists(keys.replica("host-1"))
    assert await pipeline.live_consumers(redis_client) == []


async def test_a_replica_handed_nothing_yet_is_counted(redis_client: Redis) -> None:
    """Before Redis 7.2 a read that delivers nothing makes no consumer: the heartbeat alone
    says the replica runs."""
    await ensure_groups(redis_client)
    beat = asyncio.create_task(replicas.heartbeat(redis_client, "parser", "host-3",
                                                  "127.0.0.1:9003"))
    try:
        await asyncio.sleep(0.2)
        assert await pipeline.live_consumers(redis_client) == [
            pipeline.ReplicaStatus("parser", "host-3", "127.0.0.1:9003", None, 0)]
        row = next(r for r in await pipeline.status(redis_client) if r.group == "parser")
        assert row.consumers == 1
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


async def test_a_replica_reading_two_streams_is_listed_once(redis_client: Redis) -> None:
    await ensure_groups(redis_client)
    for stream in (INDEXED, MATCHED):
        await redis_client.xadd(stream.name, {"n": "1"})
        await redis_client.xreadgroup("watcher", "host-4", {stream.name: ">"}, count=1)
    [live] = await pipeline.live_consumers(redis_client)
    assert (live.stage, live.consumer, live.pending) == ("watcher", "host-4", 2)
