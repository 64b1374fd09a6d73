"""The fetcher against a local web server that counts requests and a real redis-server: a long
Retry-After parks the URL until then (asked again then, not at the delivery's backoff), one
beyond the parking limit is dead at once, and robots.txt is fetched once per origin however
many fetches, and replicas, need it at the same time."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import make_client
from services.fetcher.main import create_app
from services.fetcher.politeness import origin_of
from shared import keys
from shared.messages import ArticleFailed, ArticleSubmitted
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, FETCHED, SUBMITTED
from tests.integration.localsite import PAGE, LocalSite, Reply

Redis = aioredis.Redis


@pytest.fixture
def polite(settings: Settings) -> Settings:
    # The delivery's own retry is far off (claim_idle_ms): a request at the right time can only
    # come from the parking.
    return settings.model_copy(update={
        "host_concurrency": 2, "host_delay_s": 0.0, "fetch_timeout_s": 5.0,
        "retry_backoff_s": 0.05, "retry_after_max_s": 1.0, "claim_idle_ms": 60_000,
    })


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    async with create_app(settings).start_lifespan_context():
        yield


async def submit(client: "Redis[bytes]", url: str) -> ArticleSubmitted:
    article = ArticleSubmitted(url=url)
    await client.xadd(SUBMITTED.name, {DATA_FIELD: article.model_dump_json(exclude_none=True)})
    return article


async def until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def answers(replies: list[Reply]) -> Callable[[LocalSite, dict[str, str]], Reply]:
    """Each of `replies` in turn, then the page."""
    def route(_site: LocalSite, _h: dict[str, str]) -> Reply:
        return replies.pop(0) if replies else (200, {"Content-Type": "text/html"}, PAGE)
    return route


async def test_a_retry_after_beyond_the_budget_parks_the_url_until_then(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
    caplog: pytest.LogCaptureFixture,
) -> None:
    site.routes["/later"] = answers([(429, {"Retry-After": "3"}, b"slow down")])
    with caplog.at_level(logging.INFO, "newsflow.fetcher"):
        async with running(polite):
            article = await submit(redis_client, site.url("/later"))
            await until(lambda: redis_client.zcard(keys.PARKED))
            # Parked: acknowledged, not pending, and not asked again meanwhile.
            assert (await redis_client.xpending(SUBMITTED.name, "fetcher"))["pending"] == 0
            (parked,) = await redis_client.zrange(keys.PARKED, 0, -1)
            assert json.loads(parked)["id"] == article.id
            await until(lambda: redis_client.xlen(FETCHED.name))
    first, second = site.hits("/later")
    assert 2.5 <= second.started - first.started < 10  # then, and only then
    assert not await redis_client.xlen(DEAD.name) and not await redis_client.zcard(keys.PARKED)
    assert f"parked {article.id} {site.url('/later')} until" in caplog.text
    assert "unparked 1 articles" in caplog.text


async def test_the_other_urls_of_a_host_that_said_retry_after_wait_too(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
) -> None:
    site.routes["/first"] = lambda _s, _h: (503, {"Retry-After": "120"}, b"maintenance")
    site.page("/second")
    async with running(polite):
        await submit(redis_client, site.url("/first"))
        await until(lambda: redis_client.zcard(keys.PARKED))
        await submit(redis_client, site.url("/second"))
        await until(lambda: _at_least(redis_client.zcard(keys.PARKED), 2))
        assert (await redis_client.xpending(SUBMITTED.name, "fetcher"))["pending"] == 0
        assert int(await redis_client.xlen(SUBMITTED.name)) == 2  # not cycled through the queue
    assert len(site.hits("/first")) == 1 and not site.hits("/second")
    scores = [s for _, s in await redis_client.zrange(keys.PARKED, 0, -1, withscores=True)]
    assert max(scores) - min(scores) < 10  # both until the host's time, about 2 minutes away
    assert min(scores) > time.time() + 100


async def _at_least(count: Any, n: int) -> bool:
    return int(await count) >= n


async def test_a_retry_after_beyond_the_parking_limit_is_dead_at_once(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
) -> None:
    site.routes["/never"] = lambda _s, _h: (429, {"Retry-After": "7200"}, b"")
    async with running(polite.model_copy(update={"retry_after_park_max_s": 3600})):
        article = await submit(redis_client, site.url("/never"))
        await until(lambda: redis_client.xlen(DEAD.name))
    (_, fields), = await redis_client.xrange(DEAD.name)
    failed = ArticleFailed.model_validate_json(fields[DATA_FIELD.encode()])
    assert failed.id == article.id and failed.permanent and failed.deliveries == 1
    assert "retry after 20" in failed.reason and "NEWSFLOW_RETRY_AFTER_PARK_MAX_S" in failed.reason
    assert len(site.hits("/never")) == 1 and not await redis_client.zcard(keys.PARKED)


# --- robots.txt: one fetch per origin at a time ------------------------------------------------


def slow_robots(site: LocalSite, _h: dict[str, str]) -> Reply:
    time.sleep(0.5)  # long enough for every concurrent fetch to want it meanwhile
    return 200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"


@pytest.fixture
async def crawlers(
    polite: Settings, redis_client: "Redis[bytes]"  # (a Redis emptied for the test)
) -> AsyncIterator[Callable[[], Crawler]]:
    """Crawlers as separate replicas have them: each its own Redis and HTTP clients."""
    made: list[tuple[httpx.AsyncClient, Redis]] = []

    def make() -> Crawler:
        http, redis = make_client(polite), aioredis.from_url(polite.redis_url)
        made.append((http, redis))
        return Crawler(http, redis, polite.model_copy(update={"host_concurrency": 16}))

    yield make
    for http, redis in made:
        await http.aclose()
        await redis.aclose()


async def test_concurrent_fetches_in_one_replica_share_one_robots_txt_request(
    site: LocalSite, crawlers: Callable[[], Crawler],
) -> None:
    site.routes["/robots.txt"] = slow_robots
    for n in range(10):
        site.page(f"/p{n}")
    crawler = crawlers()
    await asyncio.gather(*(crawler.fetch(site.url(f"/p{n}")) for n in range(10)))
    assert len(site.hits("/robots.txt")) == 1
    assert len([s for s in site.seen if s.path.startswith("/p")]) == 10


async def test_replicas_wait_for_the_one_fetching_robots_txt(
    site: LocalSite, crawlers: Callable[[], Crawler], redis_client: "Redis[bytes]",
) -> None:
    site.routes["/robots.txt"] = slow_robots
    for n in range(12):
        site.page(f"/p{n}")
    replicas = [crawlers() for _ in range(3)]
    await asyncio.gather(*(replicas[n % 3].fetch(site.url(f"/p{n}")) for n in range(12)))
    assert len(site.hits("/robots.txt")) == 1
    assert await redis_client.exists(keys.robots(origin_of(site.url("/"))))
    assert not await redis_client.exists(keys.robots_lock(origin_of(site.url("/"))))


async def test_a_replica_that_died_holding_the_lock_delays_the_others_only_until_it_expires(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
) -> None:
    site.page("/p")
    origin = origin_of(site.url("/"))
    await redis_client.set(keys.robots_lock(origin), "dead-replica", px=800)
    async with make_client(polite) as http:
        redis = aioredis.from_url(polite.redis_url)
        try:
            started = time.monotonic()
            await Crawler(http, redis, polite).fetch(site.url("/p"))
        finally:
            await redis.aclose()
    assert 0.5 < time.monotonic() - started < 5
    assert len(site.hits("/robots.txt")) == 1
