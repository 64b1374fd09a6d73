"""Feeds, sitemaps and sites read through the fetcher's guarded, polite fetch: what
`newsflow publish --feed/--sitemap/--site` asks of the fetcher (shared/sources reads them)."""

from datetime import datetime

import redis.asyncio as aioredis

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import ROBOTS, XML, FetchedPage, make_client
from shared.settings import Settings
from shared.sources.expand import Expansion, Fetch, Limits, expand


def source_fetch(crawler: Crawler, key: str) -> Fetch:
    """The fetch an expansion uses: feeds and sitemaps as XML, robots.txt as robots.txt, each
    through `crawler` (robots.txt obeyed, per-host politeness, retries); `key` labels the logs."""

    async def fetch(url: str, *, robots: bool = False) -> FetchedPage:
        return await crawler.fetch(url, kind=ROBOTS if robots else XML, key=key)

    return fetch


async def read_sources(
    settings: Settings, sources: list[str], sites: list[str], since: datetime | None
) -> Expansion:
    """The article URLs of `sources` (feeds, sitemaps) and `sites` (their robots.txt sitemaps),
    with what failed or was left out; its own HTTP client, and Redis for politeness."""
    redis = aioredis.from_url(settings.redis_url)
    http = make_client(settings)
    try:
        crawler = Crawler(http, redis, settings)
        return await expand(source_fetch(crawler, "cli"), sources, Limits.of(settings, since),
                            sites=sites)
    finally:
        await http.aclose()
        await redis.aclose()
