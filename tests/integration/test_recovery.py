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
