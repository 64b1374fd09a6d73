"""A stage against a real redis-server that loses its data or restarts: groups recreated, no
reader left stopped, /health honest, no article costs a retry."""

import asyncio
import json
import logging
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from shared.broker import Stage
from shared.messages import ArticleFetched, ArticleParsed
from shared.settings import Settings
from shared.streams import DATA_FIELD, FETCHED, PARSED
from tests.integration.test_delivery import fetched, until

Redis = aioredis.Redis


def counting_stage(settings: Settings) -> tuple[Stage, Counter[str]]:
    stage = Stage("parser", settings)
    seen: Counter[str] = Counter()

    @stage.handle(FETCHED, to=PARSED)
    async def parse(event: ArticleFetched) -> ArticleParsed:
        seen[event.id] += 1
        return ArticleParsed(id=event.id)

    return stage, seen


async def parsed_ids(client: "Redis[bytes]") -> set[str]:
    return {json.loads(f[DATA_FIELD.encode()])["id"] for _, f in await client.xrange(PARSED.name)}


async def health(stage: Stage) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stage.app),
                                 base_url="http://stage") as http:
        return await http.get("/health")


async def test_a_redis_that_lost_its_data_gets_its_groups_back_and_reading_resumes(
    settings: Settings, redis_client: "Redis[bytes]", caplog: pytest.LogCaptureFixture
) -> None:
    stage, seen = counting_stage(settings)
    async with stage.running():
        await redis_client.xadd(FETCHED.name, fetched(1))
        await until(lambda: _has(redis_client, {"a1"}))
        assert (await health(stage)).status_code == 204
        # Redis comes back empty (a failover to an empty replica, a wiped volume).
        with caplog.at_level(logging.WARNING, logger="newsflow.delivery"):
            await redis_client.flushall()
            for n in (2, 3, 4):
                await redis_client.xadd(FETCHED.name, fetched(n))
            await until(lambda: _has(redis_client, {"a2", "a3", "a4"}), timeout=20)
        assert "consumer groups of articles:fetched were gone" in caplog.text
        assert not stage.stopped_readers()
        assert (await health(stage)).status_code == 204
    assert seen == {"a1": 1, "a2": 1, "a3": 1, "a4": 1}


async def _has(client: "Redis[bytes]", ids: set[str]) -> bool:
    return ids <= await parsed_ids(client)


async def test_health_fails_while_a_reader_is_stopped(settings: Settings) -> None:
    stage, _ = counting_stage(settings)
    async with stage.running():
        assert (await health(stage)).status_code == 204
        reader = stage.broker.subscribers[0]
        await reader.stop()  # as FastStream does when the group is gone
        answer = await health(stage)
        assert answer.status_code == 503 and "stopped: " in answer.text
        # Restarted within a poll interval.
        for _ in range(100):
            if not stage.stopped_readers():
                break
            await asyncio.sleep(0.05)
        assert (await health(stage)).status_code == 204


async def test_health_fails_when_redis_does_not_answer(tmp_path: Path) -> None:
    from tests.servers import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    settings = Settings(redis_url=server.url, claim_idle_ms=400, poll_ms=100,
                        graceful_timeout_s=2)
    stage, _ = counting_stage(settings)
    try:
        async with stage.running():
            assert (await health(stage)).status_code == 204
            server.stop()
            assert (await health(stage)).status_code == 503
    finally:
        server.stop()


async def test_a_redis_restart_costs_no_article_a_retry(tmp_path: Path) -> None:
    from shared import metrics
    from tests.servers import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    settings = Settings(redis_url=server.url, claim_idle_ms=400, poll_ms=100,
                        graceful_timeout_s=2)
    retried = metrics.ENTRIES.labels("parser", "retried")
    retried_before = retried._value.get()
    in_work, redis_down = asyncio.Event(), asyncio.Event()
    stage = Stage("parser", settings)
    seen: Counter[str] = Counter()

    @stage.handle(FETCHED, to=PARSED)
    async def parse(event: ArticleFetched) -> ArticleParsed:
        seen[event.id] += 1
        if event.id == "a4":
            in_work.set()
            await redis_down.wait()  # finishes, and hands on, while Redis is down
        return ArticleParsed(id=event.id)

    # The test's own client: a fresh one for each batch.
    client: Redis[bytes] = aioredis.from_url(server.url)
    try:
        async with stage.running():
            for n in (1, 2, 3):
                await client.xadd(FETCHED.name, fetched(n))
            await until(lambda: _has(client, {"a1", "a2", "a3"}))
            for n in (4, 5, 6):
                await client.xadd(FETCHED.name, fetched(n))
            await asyncio.wait_for(in_work.wait(), 10)
            # Redis restarts (append-only file on) under the work in hand and every pooled
            # connection.
            await asyncio.to_thread(server.stop)
            redis_down.set()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            await client.aclose()
            client = aioredis.from_url(server.url)
            await until(lambda: _has(client, {f"a{n}" for n in range(1, 7)}), timeout=30)
        assert seen == {f"a{n}": 1 for n in range(1, 7)}
        assert retried._value.get() == retried_before
        assert await client.hlen("newsflow:retries:" + FETCHED.name) == 0
    finally:
        await client.aclose()
        server.stop()


async def test_start_up_warns_loudly_without_an_append_only_file(
    redis_client: "Redis[bytes]", caplog: pytest.LogCaptureFixture
) -> None:
    from shared.broker import check_persistence

    assert await check_persistence(redis_client) is True
    await redis_client.config_set("appendonly", "no")
    try:
        with caplog.at_level(logging.WARNING, logger="newsflow.delivery"):
            assert await check_persistence(redis_client) is False
        [record] = [r for r in caplog.records if "append-only" in r.getMessage()]
        assert record.levelno == logging.CRITICAL and "appendonly yes" in record.getMessage()
    finally:
        await redis_client.config_set("appendonly", "yes")


async def test_status_lag_is_right_when_redis_lost_count_of_what_was_read(
    redis_client: "Redis[bytes]",
) -> None:
    from services.cli.pipeline import status
    from shared.broker import ensure_groups
    from shared.janitor import group_lag

    await ensure_groups(redis_client)
    ids = [await redis_client.xadd(FETCHED.name, {"n": str(n)}) for n in range(150)]
    read = await redis_client.xreadgroup("parser", "c1", {FETCHED.name: ">"}, count=150)
    await redis_client.xack(FETCHED.name, "parser", *[e for e, _ in read[0][1]])

    async def lag() -> int:
        [info] = await redis_client.xinfo_groups(FETCHED.name)
        return await group_lag(redis_client, FETCHED.name, info)

    # As after an append-only file reload: the read counter stale (Redis reports a lag of
    # 150 with everything read)…
    await redis_client.execute_command("XGROUP", "SETID", FETCHED.name, "parser", ids[-1],
                                       "ENTRIESREAD", 0)
    assert (await redis_client.xinfo_groups(FETCHED.name))[0]["lag"] == 150
    assert await lag() == 0
    [row] = [r for r in await status(redis_client) if r.stream == FETCHED.name]
    assert row.lag == 0
    # …or unknown after a deletion (Redis reports no lag at all): counted instead.
    await redis_client.xdel(FETCHED.name, ids[10])
    await redis_client.execute_command("XGROUP", "SETID", FETCHED.name, "parser", ids[99])
    assert (await redis_client.xinfo_groups(FETCHED.name))[0]["lag"] is None
    assert await lag() == 50
    # A counter Redis knows is taken as it is.
    read = await redis_client.xreadgroup("parser", "c1", {FETCHED.name: ">"}, count=20)
    await redis_client.xadd(FETCHED.name, {"n": "new"})
    assert await lag() == 31
