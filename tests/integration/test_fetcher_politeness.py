"""The fetcher as a good citizen, against a local web server and a real redis-server: per-host
cap and delay shared by replicas, robots.txt, retries with Retry-After, conditional GET, URLs
already fetched, and the fetcher stage's outcomes on the streams."""

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.fetcher.crawl import Crawler, DisallowedByRobots
from services.fetcher.fetch import FetchRefused, FetchUnavailable, make_client
from services.fetcher.main import create_app
from services.fetcher.politeness import HostBusy, RobotsTxt, origin_of
from shared import keys
from shared.messages import ArticleFailed, ArticleFetched, ArticleIndexed, ArticleSubmitted
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, FETCHED, INDEXED, SUBMITTED
from tests.integration.localsite import PAGE, LocalSite, Reply, serve

Redis = aioredis.Redis

@pytest.fixture
def polite(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "host_concurrency": 2, "host_delay_s": 0.0, "fetch_timeout_s": 5.0,
        "retry_backoff_s": 0.05, "host_wait_max_s": 20.0,
    })


@pytest.fixture
async def crawlers(
    polite: Settings, redis_client: "Redis[bytes]"
) -> AsyncIterator[Callable[[Settings], Crawler]]:
    """Crawlers as separate replicas would have them: each its own Redis and HTTP clients."""
    made: list[tuple[httpx.AsyncClient, Redis]] = []

    def make(settings: Settings = polite) -> Crawler:
        http = make_client(settings)
        redis = aioredis.from_url(settings.redis_url)
        made.append((http, redis))
        return Crawler(http, redis, settings)

    yield make
    for http, redis in made:
        await http.aclose()
        await redis.aclose()


# --- politeness --------------------------------------------------------------------------------


async def test_two_replicas_never_exceed_the_per_host_cap(
    site: LocalSite, crawlers: Callable[..., Crawler]
) -> None:
    for n in range(12):
        site.page(f"/a{n}")
    site.delay_s = 0.15
    one, two = crawlers(), crawlers()
    await asyncio.gather(*(
        (one if n % 2 else two).fetch(site.url(f"/a{n}")) for n in range(12)
    ))
    assert len([s for s in site.seen if s.path.startswith("/a")]) == 12
    assert site.max_in_flight == 2


async def test_the_least_delay_between_requests_holds_across_replicas(
    site: LocalSite, crawlers: Callable[..., Crawler], polite: Settings
) -> None:
    for n in range(4):
        site.page(f"/d{n}")
    slow = polite.model_copy(update={"host_delay_s": 0.3, "host_concurrency": 4})
    one, two = crawlers(slow), crawlers(slow)
    await asyncio.gather(*((one if n % 2 else two).fetch(site.url(f"/d{n}")) for n in range(4)))
    starts = sorted(s.started for s in site.seen if s.path.startswith("/d"))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.27, gaps


async def test_waiting_for_a_busy_host_does_not_hold_up_another(
    site: LocalSite, crawlers: Callable[..., Crawler], polite: Settings
) -> None:
    site.page("/slow")
    other = LocalSite()
    httpd = serve(other)
    other.page("/fast")
    # Same host name for both servers would share the gate: reach the other one as "localhost".
    fast_url = other.url("/fast").replace("127.0.0.1", "localhost")
    try:
        crawler = crawlers(polite.model_copy(update={"host_delay_s": 1.0}))
        # Its robots.txt known already (fetching it would take the host's next 1 s itself).
        await crawler.robots.store(RobotsTxt(origin_of(fast_url), "missing"))
        await crawler.fetch(site.url("/slow"))
        started = time.monotonic()
        blocked = asyncio.create_task(crawler.fetch(site.url("/slow")))  # waits ~1 s
        await crawler.fetch(fast_url)
        assert time.monotonic() - started < 0.5
        assert not blocked.done()
        await blocked
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_a_host_too_busy_to_wait_for_raises_host_busy(
    site: LocalSite, crawlers: Callable[..., Crawler], polite: Settings
) -> None:
    site.page("/p")
    crawler = crawlers(polite.model_copy(update={"host_delay_s": 5.0, "host_wait_max_s": 0.3}))
    await crawler.robots.store(RobotsTxt(origin_of(site.url("/")), "missing"))
    await crawler.fetch(site.url("/p"))
    with pytest.raises(HostBusy, match="busy"):
        await crawler.fetch(site.url("/p"))


async def test_a_slot_held_by_a_dead_replica_frees_itself(
    site: LocalSite, crawlers: Callable[..., Crawler], polite: Settings,
    redis_client: "Redis[bytes]",
) -> None:
    site.page("/p")
    # Two slots taken by a replica that died mid-fetch, with leases that end in 300 ms.
    now_ms = int(time.time() * 1000)
    await redis_client.zadd(keys.host_slots("127.0.0.1"), {"dead1": now_ms + 300,
                                                             "dead2": now_ms + 300})
    started = time.monotonic()
    await crawlers().fetch(site.url("/p"))
    assert 0.2 < time.monotonic() - started < 3


# --- robots.txt --------------------------------------------------------------------------------


def robots(text: str) -> Callable[[LocalSite, dict[str, str]], Reply]:
    return lambda _s, _h: (200, {"Content-Type": "text/plain"}, text.encode())


async def test_robots_disallow_is_obeyed_and_cached(
    site: LocalSite, crawlers: Callable[..., Crawler], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/robots.txt"] = robots("User-agent: *\nDisallow: /private/\n")
    site.page("/private/x")
    site.page("/public/x")
    one, two = crawlers(), crawlers()
    with pytest.raises(DisallowedByRobots, match=r"disallowed by robots\.txt") as caught:
        await one.fetch(site.url("/private/x"))
    assert caught.value.url == site.url("/private/x")
    assert not site.hits("/private/x")
    await two.fetch(site.url("/public/x"))
    assert len(site.hits("/robots.txt")) == 1  # fetched once, for both replicas
    cached = [k async for k in redis_client.scan_iter(keys.ROBOTS_PREFIX + "*")]
    assert len(cached) == 1
    assert 0 < await redis_client.ttl(cached[0]) <= 86_400


async def test_a_refused_address_names_the_article_not_its_robots_txt(
    crawlers: Callable[..., Crawler], polite: Settings
) -> None:
    guarded = polite.model_copy(update={"allow_private_networks": False, "obey_robots": True})
    with pytest.raises(FetchRefused, match=r"private address 10\.0\.0\.1") as caught:
        await crawlers(guarded).fetch("http://10.0.0.1/news/story")
    assert caught.value.url == "http://10.0.0.1/news/story"


async def test_robots_rules_for_our_user_agent_win(
    site: LocalSite, crawlers: Callable[..., Crawler], polite: Settings
) -> None:
    site.routes["/robots.txt"] = robots(
        "User-agent: *\nAllow: /\n\nUser-agent: newsflow\nDisallow: /\n")
    site.page("/x")
    with pytest.raises(DisallowedByRobots):
        await crawlers().fetch(site.url("/x"))
    other = polite.model_copy(update={"user_agent": "somebot/1.0"})
    await crawlers(other).fetch(site.url("/x"))


async def test_crawl_delay_is_respected(
    site: LocalSite, crawlers: Callable[..., Crawler]
) -> None:
    site.routes["/robots.txt"] = robots("User-agent: *\nCrawl-delay: 0.4\n")
    site.page("/a")
    site.page("/b")
    crawler = crawlers()
    await asyncio.gather(crawler.fetch(site.url("/a")), crawler.fetch(site.url("/b")))
    a, b = sorted(s.started for s in site.seen if s.path in ("/a", "/b"))
    assert b - a >= 0.35


async def test_a_missing_robots_allows_everything_and_an_erroring_one_nothing(
    site: LocalSite, crawlers: Callable[..., Crawler]
) -> None:
    site.page("/x")
    await crawlers().fetch(site.url("/x"))  # robots.txt is a 404
    other = LocalSite()
    httpd = serve(other)
    try:
        other.routes["/robots.txt"] = lambda _s, _h: (500, {}, b"oops")
        other.page("/x")
        with pytest.raises(FetchUnavailable, match=r"robots\.txt .* unreachable"):
            await crawlers().fetch(other.url("/x"))
        assert not other.hits("/x")
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- retries -----------------------------------------------------------------------------------


def flaky(failures: list[Reply]) -> Callable[[LocalSite, dict[str, str]], Reply]:
    """Answers with each of `failures` in turn, then with the page."""
    def route(_site: LocalSite, _h: dict[str, str]) -> Reply:
        if failures:
            return failures.pop(0)
        return 200, {"Content-Type": "text/html"}, PAGE
    return route


async def test_retry_after_is_waited(site: LocalSite, crawlers: Callable[..., Crawler]) -> None:
    site.routes["/busy"] = flaky([(503, {"Retry-After": "1"}, b"busy")])
    started = time.monotonic()
    page = await crawlers().fetch(site.url("/busy"))
    assert page.status == 200
    first, second = site.hits("/busy")
    assert second.started - first.started >= 0.95
    assert time.monotonic() - started < 3


async def test_5xx_and_429_are_retried_with_backoff(
    site: LocalSite, crawlers: Callable[..., Crawler], caplog: pytest.LogCaptureFixture
) -> None:
    site.routes["/flaky"] = flaky([(502, {}, b""), (429, {}, b"")])
    with caplog.at_level(logging.INFO, "newsflow.fetcher"):
        page = await crawlers().fetch(site.url("/flaky"), key="art1")
    assert page.status == 200
    assert len(site.hits("/flaky")) == 3
    assert "retry art1" in caplog.text and "attempt 2 of 3" in caplog.text


async def test_retries_are_bounded_and_keep_the_last_status(
    site: LocalSite, crawlers: Callable[..., Crawler]
) -> None:
    site.routes["/down"] = lambda _s, _h: (503, {}, b"")
    with pytest.raises(FetchUnavailable) as caught:
        await crawlers().fetch(site.url("/down"))
    assert caught.value.status == 503
    assert len(site.hits("/down")) == 3


async def test_a_long_retry_after_ends_the_delivery_at_once(
    site: LocalSite, crawlers: Callable[..., Crawler], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/later"] = lambda _s, _h: (429, {"Retry-After": "3600"}, b"")
    started = time.monotonic()
    with pytest.raises(FetchUnavailable) as caught:
        await crawlers().fetch(site.url("/later"))
    assert caught.value.retry_after_s == 3600
    assert len(site.hits("/later")) == 1
    assert time.monotonic() - started < 1
    # And the host is left alone by every replica for a while (up to retry_after_max_s).
    assert await redis_client.pttl(keys.host_next("127.0.0.1")) > 5_000


# --- conditional GET ---------------------------------------------------------------------------


def etagged(body: bytes, etag: str) -> Callable[[LocalSite, dict[str, str]], Reply]:
    def route(_site: LocalSite, headers: dict[str, str]) -> Reply:
        if headers.get("if-none-match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"Content-Type": "text/html", "ETag": etag,
                     "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}, body
    return route


async def test_conditional_get_with_the_stored_validators(
    site: LocalSite, crawlers: Callable[..., Crawler]
) -> None:
    site.routes["/c"] = etagged(PAGE, '"v1"')
    crawler = crawlers()
    first = await crawler.fetch(site.url("/c"))
    assert (first.status, first.etag) == (200, '"v1"')
    again = await crawler.fetch(site.url("/c"), validators={
        "etag": first.etag or "", "last_modified": first.last_modified or ""})
    assert again.not_modified
    assert site.hits("/c")[-1].headers["if-none-match"] == '"v1"'
    assert site.hits("/c")[-1].headers["if-modified-since"] == "Wed, 21 Oct 2015 07:28:00 GMT"


# --- the fetcher stage -------------------------------------------------------------------------


async def submit(client: "Redis[bytes]", **fields: Any) -> ArticleSubmitted:
    article = ArticleSubmitted(**fields)
    await client.xadd(SUBMITTED.name, {DATA_FIELD: article.model_dump_json(exclude_none=True)})
    return article


async def entries(client: "Redis[bytes]", stream: str) -> list[dict[str, Any]]:
    return [json.loads(f[DATA_FIELD.encode()]) for _, f in await client.xrange(stream)]


async def until(check: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    """The fetcher stage started in this process (a replica without its HTTP server)."""
    async with create_app(settings).start_lifespan_context():
        yield


async def test_stage_skips_a_url_fetched_before_and_ends_the_wait(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
    caplog: pytest.LogCaptureFixture,
) -> None:
    site.routes["/story"] = etagged(PAGE, '"e1"')
    with caplog.at_level(logging.INFO, "newsflow.fetcher"):
        async with running(polite):
            article = await submit(redis_client, url=site.url("/story"))
            await until(lambda: redis_client.xlen(FETCHED.name))
            # Published again, without --refresh: no request, nothing downstream, but "done".
            await submit(redis_client, url=site.url("/story"))
            await until(lambda: redis_client.xlen(INDEXED.name))
    assert len(site.hits("/story")) == 1
    assert await redis_client.xlen(FETCHED.name) == 1
    (done,) = await entries(redis_client, INDEXED.name)
    assert ArticleIndexed.model_validate(done).id == article.id
    assert f"skipped {article.id} {site.url('/story')} already fetched" in caplog.text


async def test_stage_on_304_emits_nothing_downstream(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
    caplog: pytest.LogCaptureFixture,
) -> None:
    site.routes["/story"] = etagged(PAGE, '"e1"')
    with caplog.at_level(logging.INFO, "newsflow.fetcher"):
        async with running(polite):
            article = await submit(redis_client, url=site.url("/story"))
            await until(lambda: redis_client.xlen(FETCHED.name))
            await submit(redis_client, url=site.url("/story"), refresh=True)
            await until(lambda: redis_client.xlen(INDEXED.name))
    assert site.hits("/story")[-1].headers.get("if-none-match") == '"e1"'
    assert await redis_client.xlen(FETCHED.name) == 1
    assert f"unchanged {article.id} {site.url('/story')} 304" in caplog.text
    # Nothing is left pending: both entries were acknowledged.
    assert (await redis_client.xpending(SUBMITTED.name, "fetcher"))["pending"] == 0


async def test_stage_refetches_a_changed_page_on_refresh(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]"
) -> None:
    site.routes["/story"] = etagged(PAGE, '"e1"')
    async with running(polite):
        await submit(redis_client, url=site.url("/story"))
        await until(lambda: redis_client.xlen(FETCHED.name))
        site.routes["/story"] = etagged(PAGE.replace(b"Hello", b"Changed"), '"e2"')
        await submit(redis_client, url=site.url("/story"), refresh=True)
        await until(lambda: _at_least(redis_client, FETCHED.name, 2))
    second = ArticleFetched.model_validate((await entries(redis_client, FETCHED.name))[1])
    assert "Changed" in second.html


async def _at_least(client: "Redis[bytes]", stream: str, n: int) -> bool:
    return int(await client.xlen(stream)) >= n


async def test_stage_dead_letters_a_url_robots_forbids_with_the_reason(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
    caplog: pytest.LogCaptureFixture,
) -> None:
    site.routes["/robots.txt"] = robots("User-agent: *\nDisallow: /\n")
    site.page("/story")
    with caplog.at_level(logging.INFO):
        async with running(polite):
            article = await submit(redis_client, url=site.url("/story"))
            await until(lambda: redis_client.xlen(DEAD.name))
    (failed,) = [ArticleFailed.model_validate(e) for e in await entries(redis_client, DEAD.name)]
    assert failed.id == article.id and failed.permanent
    assert "disallowed by robots.txt" in failed.reason
    assert not site.hits("/story")
    assert "disallowed by robots.txt" in caplog.text


async def test_stage_puts_an_article_back_when_its_host_is_too_busy(
    site: LocalSite, polite: Settings, redis_client: "Redis[bytes]",
    caplog: pytest.LogCaptureFixture,
) -> None:
    site.page("/one")
    site.page("/two")
    settings = polite.model_copy(update={
        "host_concurrency": 1, "host_delay_s": 0.6, "host_wait_max_s": 0.2})
    with caplog.at_level(logging.INFO, "newsflow.fetcher"):
        async with running(settings):
            await submit(redis_client, url=site.url("/one"))
            await submit(redis_client, url=site.url("/two"))
            await until(lambda: _at_least(redis_client, FETCHED.name, 2))
    assert "deferred" in caplog.text and "back in the queue" in caplog.text
    assert not await redis_client.xlen(DEAD.name)
