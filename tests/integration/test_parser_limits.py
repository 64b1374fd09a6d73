"""The parser stage against a real redis-server with pages that once stalled it: too many
elements (dead at once), a page that kills its worker (retried once, then dead), and 100,000
nested <div>s (parsed, with its text)."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from services.parser.main import create_app
from shared import keys
from shared.broker import ensure_groups
from shared.messages import ArticleFailed, ArticleFetched, ArticleParsed
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, FETCHED, PARSED

Redis = aioredis.Redis

SENTENCES = " ".join(f"Sentence {i} of the article says what happened in Dushanbe today."
                     for i in range(40))


def page(body: str) -> str:
    return f"<html><head><title>Page</title></head><body><article>{body}</article></body></html>"


async def until(check: Callable[[], Any], timeout: float = 300.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_pages_that_once_stalled_the_parser(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    # Entries are reclaimed only after a parse of the heavy page could have ended: this tests
    # the parser's limits, not the reclaimer's window.
    settings = settings.model_copy(update={
        "parse_memory_mb": 200, "parse_max_elements": 190_000, "parse_timeout_s": 120,
        "claim_idle_ms": 20_000})
    await ensure_groups(redis_client)
    pages = {
        "crowded": page("<b>x</b>" * 250_000),  # over the element guard
        # Under the guard, over the memory cap: its tree needs ~300 MB.
        "heavy": page(f"<p>{SENTENCES}</p>" + "<b>x</b>" * 185_000),
        "deep": page("<div>" * 100_000 + f"<p>{SENTENCES}</p>" + "</div>" * 100_000),
    }
    for article_id, html in pages.items():
        event = ArticleFetched(id=article_id, url=f"https://example.com/{article_id}", html=html)
        await redis_client.xadd(FETCHED.name, {DATA_FIELD: event.model_dump_json()})

    async def settled() -> bool:
        done = {json.loads(fields[DATA_FIELD.encode()])["id"]
                for stream in (DEAD.name, PARSED.name)
                for _, fields in await redis_client.xrange(stream)}
        return done == set(pages)

    app = create_app(settings)
    async with app.start_lifespan_context():
        await until(settled)
    dead = {f.id: f for f in (ArticleFailed.model_validate_json(fields[DATA_FIELD.encode()])
                              for _, fields in await redis_client.xrange(DEAD.name))}
    parsed = {p.id: p for p in (ArticleParsed.model_validate_json(fields[DATA_FIELD.encode()])
                                for _, fields in await redis_client.xrange(PARSED.name))}
    assert set(dead) == {"crowded", "heavy"} and set(parsed) == {"deep"}
    crowded, heavy = dead["crowded"], dead["heavy"]
    assert crowded.permanent and crowded.deliveries == 1
    assert "too many elements: 250,005" in crowded.reason
    # Killed once: retried; killed again by the same page: permanent.
    assert heavy.permanent and heavy.deliveries == 2, heavy
    assert "killed its parse worker 2 times" in heavy.reason
    assert "ran out of memory (the cap is 200 MB)" in heavy.reason
    assert int(await redis_client.get(keys.parse_kills("heavy")) or 0) == 2
    assert 0 < await redis_client.ttl(keys.parse_kills("heavy")) <= 86_400
    assert parsed["deep"].words >= 400 and "Sentence 39" in parsed["deep"].text
    assert json.loads(heavy.original[DATA_FIELD])["id"] == "heavy"
