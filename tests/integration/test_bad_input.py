"""Input that can never work, sent to articles:submitted as any Redis client could: each is dead
at once (one delivery) with its reason, and an `id` in the message never overwrites an article."""

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from services.fetcher.main import create_app
from shared.messages import ArticleFailed, ArticleFetched, article_id
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, FETCHED, SUBMITTED

Redis = aioredis.Redis

BAD: dict[str, tuple[Any, str]] = {
    "int url": ({"url": 123}, "url: Input should be a valid string"),
    "int html": ({"html": 5}, "html: Input should be a valid string"),
    "list url": ({"url": ["https://example.com/"]}, "url: Input should be a valid string"),
    "invalid IDN": ({"url": "http://xn--zz--.test/"}, "invalid host name 'xn--zz--.test'"),
    "NUL in url": ({"url": "http://example.com/a\u0000b"}, "control character in URL"),
    "bad port": ({"url": "http://example.com:99999/"}, "Port out of range"),
}


async def until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_input_that_can_never_work_is_dead_at_once_with_its_reason(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    # A delivery retried would come back only after a minute: dead at once means first time.
    settings = settings.model_copy(update={"claim_idle_ms": 60_000})
    for body, _ in BAD.values():
        await redis_client.xadd(SUBMITTED.name, {DATA_FIELD: json.dumps(body)})
    started = time.monotonic()
    async with create_app(settings).start_lifespan_context():
        await until(lambda: _at_least(redis_client.xlen(DEAD.name), len(BAD)))
    assert time.monotonic() - started < 30
    letters = [ArticleFailed.model_validate_json(f[DATA_FIELD.encode()])
               for _, f in await redis_client.xrange(DEAD.name)]
    # Worked on concurrently: matched by their originals, not by their order.
    by_body = {letter.original[DATA_FIELD]: letter for letter in letters}
    assert len(by_body) == len(BAD)
    for name, (body, reason) in BAD.items():
        letter = by_body[json.dumps(body)]
        assert letter.permanent and letter.deliveries == 1, name
        assert reason in letter.reason and "Traceback" not in letter.reason, name
    assert (await redis_client.xpending(SUBMITTED.name, "fetcher"))["pending"] == 0


async def test_a_submitted_id_never_replaces_another_article(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    victim = article_id("https://example.com/victim")
    body = {"id": victim, "url": "https://example.com/attacker", "html": "<p>Defaced</p>"}
    await redis_client.xadd(SUBMITTED.name, {DATA_FIELD: json.dumps(body)})
    async with create_app(settings).start_lifespan_context():
        await until(lambda: redis_client.xlen(FETCHED.name))
    (_, fields), = await redis_client.xrange(FETCHED.name)
    fetched = ArticleFetched.model_validate_json(fields[DATA_FIELD.encode()])
    assert fetched.id == article_id("https://example.com/attacker") != victim
    assert "Defaced" in fetched.html


async def _at_least(count: Any, n: int) -> bool:
    return int(await count) >= n
