"""Near-duplicates against a real Redis: the index on its own, then through the enricher service."""

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeAlias

import pytest
import redis.asyncio as aioredis

from services.enricher import minhash
from services.enricher.duplicates import KEY_PREFIX, SEQ_KEY, DuplicateIndex, article_key
from shared.messages import ArticleEnriched, ArticleParsed
from shared.settings import Settings
from shared.streams import DATA_FIELD, ENRICHED, PARSED

FIXTURES = Path(__file__).parent.parent / "fixtures"
Client: TypeAlias = aioredis.Redis


def story(path: Path) -> tuple[str, str]:
    """Headline and body of an article file."""
    title, body = path.read_text(encoding="utf-8").split("\n", 1)
    return title.strip(), body.split("\nRelated articles")[0].strip()


ORIGINAL = story(FIXTURES / "article.txt")
REPUBLISHED = story(FIXTURES / "enricher" / "republished.txt")
SAME_TOPIC = story(FIXTURES / "enricher" / "same_topic.txt")


def sig(text: str) -> minhash.Signature:
    signature = minhash.signature(text)
    assert signature is not None
    return signature


def random_body(rng: random.Random, vocabulary: list[str], words: int = 400) -> str:
    return " ".join(rng.choices(vocabulary, k=words))


async def test_republished_story_is_linked_to_the_original(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client)
    assert ORIGINAL[0] != REPUBLISHED[0]  # a new headline, and a few sentences edited
    assert await index.link("original", sig(ORIGINAL[1])) is None
    assert await index.link("republished", sig(REPUBLISHED[1])) == "original"


async def test_different_story_on_the_same_topic_is_not_linked(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client)
    assert await index.link("original", sig(ORIGINAL[1])) is None
    assert await index.link("same-topic", sig(SAME_TOPIC[1])) is None


async def test_an_article_processed_again_is_never_its_own_duplicate(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client)
    assert await index.link("original", sig(ORIGINAL[1])) is None
    assert await index.link("original", sig(ORIGINAL[1])) is None
    assert await index.link("republished", sig(REPUBLISHED[1])) == "original"
    # Redelivered later, each keeps its place in line: the original does not become a copy.
    assert await index.link("original", sig(ORIGINAL[1])) is None
    assert await index.link("republished", sig(REPUBLISHED[1])) == "original"


async def test_every_copy_links_to_the_first(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client)
    await index.link("first", sig(ORIGINAL[1]))
    await index.link("second", sig(REPUBLISHED[1]))
    assert await index.link("third", sig(REPUBLISHED[1] + " Updated at 14:00.")) == "first"


async def test_short_bodies_are_left_alone(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client)
    teaser = "Subscribe to read the whole story."
    assert minhash.signature(teaser) is None
    assert await index.link("teaser-1", minhash.signature(teaser)) is None
    assert await index.link("teaser-2", minhash.signature(teaser)) is None
    assert await redis_client.dbsize() == 0


async def test_replicas_racing_on_copies_still_link_them(
    redis_client: Client, settings: Settings
) -> None:
    other: Client = aioredis.from_url(settings.redis_url)
    try:
        a, b = DuplicateIndex(redis_client), DuplicateIndex(other)
        results = await asyncio.gather(
            a.link("copy-a", sig(ORIGINAL[1])), b.link("copy-b", sig(ORIGINAL[1]))
        )
    finally:
        await other.aclose()
    # Whichever registered second is the copy of the other; never both, never neither.
    assert list(results) in ([None, "copy-a"], ["copy-b", None])


async def test_the_index_expires(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client, window_s=1, bucket_s=1)
    assert await index.link("original", sig(ORIGINAL[1])) is None
    keys = [k async for k in redis_client.scan_iter(f"{KEY_PREFIX}:*")]
    for key in keys:
        if key.decode() != SEQ_KEY:
            assert 0 < await redis_client.ttl(key) <= 2
    await asyncio.sleep(2.2)
    assert not await redis_client.exists(article_key("original"))
    assert [k async for k in redis_client.scan_iter(f"{KEY_PREFIX}:*")] == [SEQ_KEY.encode()]
    assert await index.link("republished", sig(REPUBLISHED[1])) is None


async def test_memory_per_thousand_articles_is_bounded(redis_client: Client) -> None:
    index = DuplicateIndex(redis_client)
    rng = random.Random(5)  # noqa: S311 -- made-up article bodies, not secrets
    vocabulary = [f"w{i}" for i in range(5000)]
    await index.link("warm-up", sig(random_body(rng, vocabulary)))
    before = (await redis_client.info("memory"))["used_memory"]
    for n in range(1000):
        await index.link(f"article-{n:05d}", sig(random_body(rng, vocabulary)))
    used = (await redis_client.info("memory"))["used_memory"] - before
    # Measured 2.8-3.0 MB on valkey 8.1 (a 480-byte signature and 40 band fields an article).
    assert used < 4_000_000, f"{used / 1e6:.2f} MB per 1,000 articles"
    assert await redis_client.ttl(article_key("article-00000")) > 0


@pytest.mark.slow
async def test_enricher_service_marks_the_copy(
    redis_client: Client, settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url,
           "NEWSFLOW_CLAIM_IDLE_MS": "5000", "NEWSFLOW_POLL_MS": "100"}
    log_path = tmp_path / "enricher.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "run", "enricher", env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for article_id, (title, body) in (("orig", ORIGINAL), ("copy", REPUBLISHED),
                                          ("other", SAME_TOPIC)):
            event = ArticleParsed(id=article_id, url=f"https://example.com/{article_id}",
                                  title=title, text=body, language="en")
            await redis_client.xadd(PARSED.name, {DATA_FIELD: event.model_dump_json()})
        enriched: dict[str, ArticleEnriched] = {}
        deadline = time.monotonic() + 60
        while len(enriched) < 3 and time.monotonic() < deadline and proc.returncode is None:
            await asyncio.sleep(0.2)
            entries: Any = await redis_client.xrange(ENRICHED.name)
            for _, fields in entries:
                article = ArticleEnriched.model_validate(json.loads(fields[DATA_FIELD.encode()]))
                enriched[article.id] = article
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=30)
    output = log_path.read_text()
    assert set(enriched) == {"orig", "copy", "other"}, output
    assert enriched["orig"].duplicate_of is None
    assert enriched["copy"].duplicate_of == "orig"
    assert enriched["other"].duplicate_of is None
    assert "enriched copy en" in output and "duplicate of orig" in output
