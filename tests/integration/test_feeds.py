"""Feeds and sitemaps as sources, against a local web server and a real redis-server: the
scheduler's polls (conditional GET, only new entries, failing parts retried with backoff),
`newsflow feeds`, `publish --feed/--sitemap/--site` on files shaped as the web serves them
(indexes with a 404 sitemap, cut and plain-text sitemaps, charsets only in the header, one
article linked seven ways), and `publish --wait` for a URL fetched before."""

import asyncio
import gzip
import json
import os
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.fetcher import scheduler
from services.fetcher.crawl import Crawler
from services.fetcher.fetch import make_client
from services.fetcher.poll import FeedPoller
from shared import keys
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




# --- sources that fail in part, and other real-web shapes (issue #22) -------------------------


def index(*urls: str) -> bytes:
    maps = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in urls)
    return (f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
            f'sitemap/0.9">{maps}</sitemapindex>').encode()


def dated(*entries: tuple[str, str]) -> bytes:
    """A Google News sitemap: (URL, lastmod or publication date) pairs, alternately."""
    body = "".join(
        f"<url><loc>{u}</loc><lastmod>{d}</lastmod></url>" if i % 2 == 0 else
        f"<url><loc>{u}</loc><news:news><news:publication_date>{d}</news:publication_date>"
        "</news:news></url>"
        for i, (u, d) in enumerate(entries))
    return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{body}</urlset>'
            ).encode()


async def test_publish_keeps_every_part_that_reads(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    # An index with a good sitemap, one answering 404 and one cut short (a broken download);
    # a feed that is gone; a plain-text sitemap, and a gzipped one.
    site.routes["/index.xml"] = xml(index(site.url("/a.xml"), site.url("/missing.xml"),
                                          site.url("/cut.xml")), "application/xml")
    site.routes["/a.xml"] = xml(urlset(site.url("/a1"), site.url("/a2")), "text/xml")
    whole = urlset(*(site.url(f"/c{i}") for i in range(50)))
    site.routes["/cut.xml"] = xml(whole[: whole.index(f"{site.url('/c31')}<".encode())],
                                  "application/xml")
    site.routes["/list.txt"] = xml(f"{site.url('/t1')}\n\n{site.url('/t2')}\n".encode(),
                                   "text/plain")
    site.routes["/list.txt.gz"] = xml(gzip.compress(f"{site.url('/z1')}\r\n".encode()),
                                      "application/gzip")
    code, out, err = await cli(
        env, "publish", "--sitemap", site.url("/index.xml"), "--feed", site.url("/gone"),
        "--sitemap", site.url("/list.txt"), "--sitemap", site.url("/list.txt.gz"))
    assert code == 1, err  # something failed: said, and the exit status says it too
    expected = [site.url(p) for p in ("/a1", "/a2", *(f"/c{i}" for i in range(31)), "/t1",
                                      "/t2", "/z1")]
    assert await submitted_urls(redis_client) == expected
    assert out.count("submitted ") == len(expected)
    assert f"error: {site.url('/missing.xml')}: HTTP 404" in err
    assert f"error: {site.url('/gone')}: HTTP 404" in err
    assert "cut short" in err and "kept the 31 URLs" in err
    assert f"sources: {len(expected)} URLs from 5 files" in err and "2 failed" in err


async def test_publish_reads_the_http_charset_and_one_article_once(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    # The charset only in the Content-Type: the XML declares none.
    site.routes["/ru"] = xml(rss("/новости/1", "/статьи/2", base=site.base).decode().encode(
        "koi8-r"), "application/rss+xml; charset=koi8-r")
    site.routes["/ja"] = xml(urlset(site.url("/ニュース")).decode().encode("shift_jis"),
                             "text/xml; charset=Shift_JIS")
    # One article linked seven ways.
    links = ["https://news.example/story", "https://NEWS.example/story#comments",
             "https://news.example/story?utm_source=rss&utm_medium=feed",
             "https://news.example:443/story?fbclid=abc", "http://news.example/story",
             "https://www.news.example/story", "https://news.example/story/"]
    site.routes["/seven"] = xml(rss(*links))
    code, _out, err = await cli(env, "publish", "--feed", site.url("/ru"), "--sitemap",
                               site.url("/ja"), "--feed", site.url("/seven"))
    assert code == 0, err
    submitted = await submitted_urls(redis_client)
    # Feeds first, then sitemaps.
    assert submitted[:2] == [site.url("/новости/1"), site.url("/статьи/2")]
    assert submitted[-1] == site.url("/ニュース")
    # One stream entry for the article linked seven ways: its first link.
    assert submitted[2:-1] == [links[0]]
    assert "6 duplicates" in err


async def test_publish_site_since_reads_robots_sitemaps_and_recent_entries(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/robots.txt"] = lambda _s, _h: (200, {"Content-Type": "text/plain"}, (
        f"User-agent: *\nDisallow: /private\nSitemap: {site.url('/news.xml')}\n").encode())
    site.routes["/news.xml"] = xml(dated(
        (site.url("/2009"), "2009-06-01"), (site.url("/fresh"), "2025-03-01T12:00:00Z"),
        (site.url("/new"), "2025-02-01"), (site.url("/old-news"), "2010-01-01T00:00:00Z")),
        "application/xml")
    code, _out, err = await cli(env, "publish", "--site", site.base, "--since", "2025-01-01")
    assert code == 0, err
    assert await submitted_urls(redis_client) == [site.url("/fresh"), site.url("/new")]
    assert "2 older than --since" in err
    code, _, err = await cli(env, "publish", "--site", site.base, "--since", "last week")
    assert code == 2 and "not a date" in err


async def test_publish_says_what_was_wrong_with_a_feed(
    site: LocalSite, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/html"] = xml(b"<!DOCTYPE html><html><body>a page</body></html>",
                               "application/rss+xml")
    site.routes["/nolinks"] = xml(
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<entry><id>Correct Value</id><title>a</title></entry>"
        b"<entry><id>urn:uuid:1</id><title>b</title></entry></feed>", "application/atom+xml")
    code, _, err = await cli(env, "publish", "--feed", site.url("/html"))
    assert code == 1
    assert "served as application/rss+xml, but the body is an HTML page" in err
    code, _, err = await cli(env, "publish", "--feed", site.url("/nolinks"))
    assert code == 1
    assert "lists 2 entries, none with a usable link" in err
    assert "nothing to publish: the feeds and sitemaps listed no article URLs" in err
    assert "give URLs" not in err
    assert not await redis_client.xlen(SUBMITTED.name)


async def test_scheduler_submits_the_good_sitemaps_and_retries_the_failing_one(
    site: LocalSite, quick: Settings, redis_client: "Redis[bytes]"
) -> None:
    site.routes["/index.xml"] = etagged(index(site.url("/a.xml"), site.url("/b.xml")), '"i1"')
    site.routes["/a.xml"] = xml(urlset(site.url("/a1")), "application/xml")
    registry = FeedRegistry(redis_client)
    submitted = Submitted()
    feed_url = site.url("/index.xml")
    async with make_client(quick) as http:
        poller = FeedPoller(registry, Crawler(http, redis_client, quick), submitted, quick)
        # every_s=1: the first retry of a file that failed for good is one interval later.
        feed = await registry.add(feed_url, every_s=1)
        assert await poller.poll(feed) == [site.url("/a1")]
        failing = await registry.failing(feed_url)
        assert list(failing) == [site.url("/b.xml")] and failing[site.url("/b.xml")].attempts == 1
        state = await registry.state(feed_url)
        assert state["failed"] == "1" and "HTTP 404" in state["error"]

        # The sitemap comes back; the index is unchanged (304), yet the sitemap is read again
        # once its backoff is over, and only then.
        site.routes["/b.xml"] = xml(urlset(site.url("/b1"), site.url("/a1")), "application/xml")
        await until(lambda: _due(registry, feed_url, site.url("/b.xml")), timeout=30)
        assert await poller.poll(feed) == [site.url("/b1")]
        assert site.hits("/index.xml")[-1].headers["if-none-match"] == '"i1"'
        assert await registry.failing(feed_url) == {}
        assert (await registry.state(feed_url))["error"] == ""

        # A failing sitemap the index stops listing is forgotten.
        site.routes["/index.xml"] = etagged(index(site.url("/a.xml"), site.url("/c.xml")), '"i2"')
        assert await poller.poll(feed) == []
        assert list(await registry.failing(feed_url)) == [site.url("/c.xml")]
        site.routes["/index.xml"] = etagged(index(site.url("/a.xml")), '"i3"')
        assert await poller.poll(feed) == []
        assert await registry.failing(feed_url) == {}
    assert submitted.urls == [site.url("/a1"), site.url("/b1")]


async def _due(registry: FeedRegistry, feed: str, file: str) -> bool:
    failing = await registry.failing(feed)
    return file not in failing or failing[file].retry_at <= time.time()


async def test_scheduler_backs_off_a_failing_feed_and_applies_its_since(
    site: LocalSite, quick: Settings, redis_client: "Redis[bytes]"
) -> None:
    quick = quick.model_copy(update={"fetch_attempts": 1})
    site.routes["/down"] = lambda _s, _h: (503, {"Content-Type": "text/plain"}, b"busy")
    site.routes["/news.xml"] = xml(dated((site.url("/old"), "2009-01-01"),
                                         (site.url("/new"), "2099-01-01")), "text/xml")
    registry = FeedRegistry(redis_client)
    submitted = Submitted()
    async with make_client(quick) as http:
        poller = FeedPoller(registry, Crawler(http, redis_client, quick), submitted, quick)
        await registry.add(site.url("/down"), every_s=3600)
        await registry.add(site.url("/news.xml"), every_s=3600, since="2025-01-01")
        before = time.time()
        assert await poller.poll_due() == 2
        # A passing failure: polled again in a minute, not in an hour; then in two.
        due = await redis_client.zscore(keys.FEEDS_DUE, site.url("/down"))
        assert due is not None and before + 50 < due < time.time() + 70
        (down,) = [f for f in await registry.feeds() if f.url.endswith("/down")]
        assert await poller.poll(down) == []
        assert (await registry.failing(down.url))[down.url].attempts == 2
        due = await redis_client.zscore(keys.FEEDS_DUE, down.url)
        assert due is not None and before + 110 < due < time.time() + 130
        assert "503" in (await registry.state(down.url))["error"]
    assert submitted.urls == [site.url("/new")]
    (news,) = [f for f in await registry.feeds() if f.url.endswith("/news.xml")]
    assert news.since == "2025-01-01"


async def test_the_scheduler_service_submits_what_reads_and_feeds_list_says_what_failed(
    site: LocalSite, quick: Settings, env: dict[str, str], redis_client: "Redis[bytes]"
) -> None:
    site.routes["/index.xml"] = xml(index(site.url("/news.txt"), site.url("/missing.xml")),
                                    "application/xml")
    site.routes["/news.txt"] = xml(f"{site.url('/n1')}\n{site.url('/n2')}\n".encode(),
                                   "text/plain; charset=utf-8")
    code, _, err = await cli(env, "feeds", "add", site.url("/index.xml"), "--every", "1h",
                             "--since", "2d")
    assert code == 0, err
    async with scheduler.create_app(quick.model_copy(
            update={"scheduler_tick_s": 0.2})).start_lifespan_context():
        await until(lambda: _state_has(redis_client, site.url("/index.xml"), "failed"), 60)
    assert await submitted_urls(redis_client) == [site.url("/n1"), site.url("/n2")]
    code, out, _ = await cli(env, "feeds", "list")
    assert "since 2d" in out and "2 new, 1 files failed" in out
    assert f"error: {site.url('/missing.xml')}: HTTP 404" in out


async def _state_has(client: "Redis[bytes]", feed: str, field: str) -> bool:
    return bool(await client.hexists(keys.feed_state(feed), field))
