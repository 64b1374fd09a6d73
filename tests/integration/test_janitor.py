"""The janitor against a real redis-server: trims only what every group finished, forgets only
consumers that are gone and hold nothing."""

import asyncio

import redis.asyncio as aioredis

from shared.broker import ensure_groups
from shared.janitor import remove_gone_consumers, safe_trim_point, sweep, trim_acknowledged
from shared.settings import Settings
from shared.streams import FETCHED, INDEXED

Redis = aioredis.Redis


async def test_trims_only_what_every_group_has_acknowledged(redis_client: Redis) -> None:
    await ensure_groups(redis_client)
    ids = [await redis_client.xadd(FETCHED.name, {"n": str(n)}) for n in range(10)]
    assert await trim_acknowledged(redis_client, FETCHED.name) == 0  # nothing read yet
    read = await redis_client.xreadgroup("parser", "c1", {FETCHED.name: ">"}, count=6)
    got = [entry_id for entry_id, _ in read[0][1]]
    await redis_client.xack(FETCHED.name, "parser", *got[:2], *got[3:])  # got[2] still pending
    assert await safe_trim_point(redis_client, FETCHED.name) == got[2].decode()
    assert await trim_acknowledged(redis_client, FETCHED.name) == 2
    left = [entry_id for entry_id, _ in await redis_client.xrange(FETCHED.name)]
    assert left == ids[2:]  # the pending entry and everything unread are kept
    # A second group that has read nothing holds everything back.
    await redis_client.xgroup_create(FETCHED.name, "audit", id="0")
    await redis_client.xack(FETCHED.name, "parser", got[2])
    assert await trim_acknowledged(redis_client, FETCHED.name) == 0


async def test_forgets_silent_consumers_with_nothing_pending_only(redis_client: Redis) -> None:
    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, {"n": "1"})
    await redis_client.xreadgroup("parser", "holder", {FETCHED.name: ">"}, count=1)
    # Consumers that never got an entry. (Before Redis 7.2 a read that delivers nothing
    # creates no consumer, so they are made as a replica that started and found no work.)
    await redis_client.xgroup_createconsumer(FETCHED.name, "parser", "idle")
    await asyncio.sleep(0.3)
    await redis_client.xgroup_createconsumer(FETCHED.name, "parser", "alive")
    removed = await remove_gone_consumers(redis_client, FETCHED, idle_ms=200)
    assert removed == ["idle"]
    names = {c["name"] for c in await redis_client.xinfo_consumers(FETCHED.name, "parser")}
    assert names == {b"holder", b"alive"}


async def test_sweep_bounds_the_done_stream(redis_client: Redis, settings: Settings) -> None:
    await ensure_groups(redis_client)
    for n in range(500):
        await redis_client.xadd(INDEXED.name, {"n": str(n)})
    settings = settings.model_copy(update={"indexed_keep": 100})
    # The watcher has not read them: nothing is dropped.
    await sweep(redis_client, settings)
    assert await redis_client.xlen(INDEXED.name) == 500
    read = await redis_client.xreadgroup("watcher", "w1", {INDEXED.name: ">"}, count=300)
    await redis_client.xack(INDEXED.name, "watcher", *[i for i, _ in read[0][1]])
    await sweep(redis_client, settings)
    # The 200 it has not read are kept, and the last it read (the safe point, kept as for
    # every stream).
    assert await redis_client.xlen(INDEXED.name) == 201
    rest = await redis_client.xreadgroup("watcher", "w1", {INDEXED.name: ">"}, count=200)
    await redis_client.xack(INDEXED.name, "watcher", *[i for i, _ in rest[0][1]])
    await sweep(redis_client, settings)
    # All finished: the newest 100 stay for publishers that wait.
    left = await redis_client.xrange(INDEXED.name)
    assert [f[b"n"] for _, f in left] == [str(n).encode() for n in range(400, 500)]


async def test_a_consumer_handed_entries_since_it_was_seen_idle_is_kept(
    redis_client: Redis,
) -> None:
    await ensure_groups(redis_client)
    await redis_client.xgroup_createconsumer(FETCHED.name, "parser", "late")
    await asyncio.sleep(0.3)
    infos = await redis_client.xinfo_consumers(FETCHED.name, "parser")
    assert [(c["name"], c["pending"]) for c in infos] == [(b"late", 0)]  # idle, holds nothing
    # Between the janitor's look and its delete, the replica wakes and is handed an entry.
    await redis_client.xadd(FETCHED.name, {"n": "1"})
    await redis_client.xreadgroup("parser", "late", {FETCHED.name: ">"}, count=1)
    real = redis_client.xinfo_consumers

    async def as_seen_before(*args: object) -> object:
        redis_client.xinfo_consumers = real  # type: ignore[method-assign]
        return infos

    redis_client.xinfo_consumers = as_seen_before  # type: ignore[method-assign]
    assert await remove_gone_consumers(redis_client, FETCHED, idle_ms=200) == []
    assert (await redis_client.xpending(FETCHED.name, "parser"))["pending"] == 1
