"""Feeds and sitemaps as sources, against a local web server and a real redis-server: the
scheduler's polls (conditional GET, only new entries), `newsflow feeds`, `publish --feed`,
`publish --sitemap`, and `publish --wait` for a URL fetched before."""

import asyncio
import gzip
import json
import os
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import make_client
from services.fetcher.poll import FeedPoller
from shared.messages import ArticleSubmitted
from shared.settings import Settings
from shared.sources.registry import FeedRegistry
from shared.streams import DATA_FIELD, FETCHED, SUBMITTED
from tests.integration.localsite import LocalSite
from tests.integration.test_fetcher_politeness import etagged, running, until

Redis = aioredis.Redis


def rss(*paths: str, base: str = "") -> bytes:
    items = "".join(f"<item><title>{p}</title><link>{base}{p}</link></item>" for p in paths)
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}'
            "</channel></rss>").encode()


def urlset(*urls: str) -> bytes:
    locs = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    return (f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{locs}</urlset>").encode()


def xml(body: bytes, content_type: str = "application/rss+xml") -> Any:
    return lambda _s, _h: (200, {"Content-Type": content_type}, body)


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"host_delay_s": 0.0, "host_concurrency": 4})


class Submitted:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, articles: list[ArticleSubmitted]) -> None:
        self.urls += [a.url or "" for a in articles]


async def test_scheduler_submits_only_entries_not_seen_before(
    site: LocalSite, quick: Settings, redis_client: "Redis[bytes]",
    caplog: pytest.LogCaptureFixture,
) -> None:
    site.routes["/feed"] = etagged(rss("/a", "/b", "/a", base=site.base), '"f1"')
    registry = FeedRegistry(redis_client)
    submitted = Submitted()
    async with make_client(quick) as http:
        poller = FeedPoller(registry, Crawler(http, redis_client, quick), submitted, quick)
        await registry.add(site.url("/feed"), every_s=60)
        assert await poller.poll_due() == 1
        assert submitted.urls == [site.url("/a"), site.url("/b")]
        # Not due again for a minute.
        assert await poller.poll_due() == 0

        # Polled again: conditional GET, 304, nothing submitted.
        (feed,) = await registry.feeds()
        with caplog.at_level("INFO", "newsflow.scheduler"):
            assert await poller.poll(feed) == []
        assert site.hits("/feed")[-1].headers["if-none-match"] == '"f1"'
        assert f"unchanged feed {site.url('/feed')} 304" in caplog.text

        # The feed changes: only its new entry is submitted.
        site.routes["/feed"] = etagged(rss("/c", "/a", base=site.base), '"f2"')
        assert await poller.poll(feed) == [site.url("/c")]
        assert submitted.urls == [site.url("/a"), site.url("/b"), site.url("/c")]
    (listed,) = await registry.feeds()
    assert listed.state["status"] == "200" and listed.state["new"] == "1"
    assert listed.state["etag"] == '"f2"'


async def test_scheduler_reads_sitemaps_and_records_failures(
    site: LocalSite, quick: Settings, redis_client: "Redis[bytes]"
) -> None:
    site.routes["/news-sitemap.xml"] = xml(urlset(site.url("/s1"), site.url("/s2")),
                                           "text/xml")
    site.routes["/broken"] = lambda _s, _h: (200, {"Content-Type": "image/png"}, b"\x89PNG")
    registry = FeedRegistry(redis_client)
    submitted = Submitted()
    async with make_client(quick) as http:
        poller = FeedPoller(registry, Crawler(http, redis_client, quick), submitted, quick)
        await registry.add(site.url("/news-sitemap.xml"), every_s=60)
        await registry.add(site.url("/broken"), every_s=60)
        assert await poller.poll_due() == 2
    assert submitted.urls == [site.url("/s1"), site.url("/s2")]
    broken = next(f for f in await registry.feeds() if f.url.endswith("/broken"))
    assert "not XML" in broken.state["error"]


async def test_two_schedulers_poll_a_due_feed_once(
    site: LocalSite, quick: Settings, redis_client: "Redis[bytes]", redis_server: Any
) -> None:
    site.routes["/feed"] = xml(rss("/a", base=site.base))
    other: Redis[bytes] = aioredis.from_url(redis_server.url)
    try:
        await FeedRegistry(redis_client).add(site.url("/feed"), every_s=60)
        claims = await asyncio.gather(FeedRegistry(redis_client).claim_due(),
                                      FeedRegistry(other).claim_due())
    finally:
        await other.aclose()
    assert sorted(len(c) for c in claims) == [0, 1]


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def env(quick: Settings) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": quick.redis_url, "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "true",
            "NEWSFLOW_HOST_DELAY_S": "0"}


async def submitted_urls(client: "Redis[bytes]") -> list[str]:
    return [json.loads(f[DATA_FIELD.encode()])["url"]
            for _, f in await client.xrange(SUBMITTED.name)]


async def test_publish_feed_and_sitemap_expand_and_deduplicate(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/feed"] = xml(rss("/a", "/b", base=site.base))
    site.routes["/index.xml"] = xml(
        (f'<?xml version="1.0"?><sitemapindex><sitemap><loc>{site.url("/s.xml.gz")}</loc>'
         "</sitemap></sitemapindex>").encode(), "application/xml")
    site.routes["/s.xml.gz"] = xml(gzip.compress(urlset(site.url("/b"), site.url("/c"))),
                                   "application/x-gzip")
    code, out, err = await cli(env, "publish", site.url("/a"), "--feed", site.url("/feed"),
                               "--sitemap", site.url("/index.xml"))
    assert code == 0, err
    assert await submitted_urls(redis_client) == [site.url(p) for p in ("/a", "/b", "/c")]
    assert out.count("submitted ") == 3


async def test_publish_feed_that_is_not_a_feed_says_why(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/feed"] = xml(b"<html><body>no</body></html>", "application/xml")
    code, _, err = await cli(env, "publish", "--feed", site.url("/feed"))
    assert code == 1
    assert "not an RSS or Atom feed" in err
    assert not await redis_client.xlen(SUBMITTED.name)


async def test_feeds_add_list_remove(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    url = site.url("/feed")
    code, out, err = await cli(env, "feeds", "add", url, "--every", "15m")
    assert code == 0, err
    assert f"added {url} every 900 s" in out
    code, out, _ = await cli(env, "feeds", "list")
    assert url in out and "every 900 s" in out and "not polled yet" in out
    code, _, err = await cli(env, "feeds", "add", url, "--every", "5s")
    assert code == 2 and "minimum" in err
    code, out, _ = await cli(env, "feeds", "remove", url)
    assert code == 0 and f"removed {url}" in out
    code, out, _ = await cli(env, "feeds", "list")
    assert "no feeds" in out
    code, _, err = await cli(env, "feeds", "remove", url)
    assert code == 1 and "no feed" in err


async def test_publish_wait_ends_for_a_url_fetched_before(
    site: LocalSite, quick: Settings, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/story"] = etagged(b"<html><body><p>story</p></body></html>", '"s1"')
    async with running(quick):
        code, _, err = await cli(env, "publish", site.url("/story"))
        assert code == 0, err
        await until(lambda: redis_client.xlen(FETCHED.name))
        # No parser or indexer runs here: only the fetcher's "done" for a URL it skips can end
        # this wait, and again for an unchanged one (304) on --refresh.
        code, out, err = await cli(env, "publish", site.url("/story"), "--wait", "--timeout",
                                   "30")
        assert code == 0, err
        assert "indexed 1/1" in out
        code, out, err = await cli(env, "publish", site.url("/story"), "--refresh", "--wait",
                                   "--timeout", "30")
        assert code == 0, err
    assert len(site.hits("/story")) == 2
    assert await redis_client.xlen(FETCHED.name) == 1


