"""Poll the feeds that are due (conditional GET) and submit the entries not seen before."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import XML, FetchedPage, FetchError
from services.fetcher.politeness import HostBusy
from services.fetcher.registry import Feed, FeedRegistry
from services.fetcher.sources import (
    SourceError,
    expand_sitemap,
    feed_entries,
    gunzipped,
    is_sitemap,
)
from shared.messages import ArticleSubmitted
from shared.settings import Settings

logger = logging.getLogger("newsflow.scheduler")

Submit = Callable[[list[ArticleSubmitted]], Awaitable[None]]
"""Adds articles to articles:submitted."""


class FeedPoller:
    """Polls registered feeds and sitemaps; each new entry becomes one submitted article."""

    def __init__(
        self, registry: FeedRegistry, crawler: Crawler, submit: Submit, settings: Settings
    ) -> None:
        self.registry = registry
        self.crawler = crawler
        self.submit = submit
        self.settings = settings

    async def poll_due(self) -> int:
        """Poll every feed due now, at once; returns how many were polled."""
        due = await self.registry.claim_due()
        await asyncio.gather(*(self.poll(feed) for feed in due))
        return len(due)

    async def run(self) -> None:
        """Poll due feeds every settings.scheduler_tick_s, until cancelled."""
        while True:
            try:
                await self.poll_due()
            except Exception:
                # Redis is briefly away, say: log it and keep the schedule going.
                logger.exception("polling feeds failed")
            await asyncio.sleep(self.settings.scheduler_tick_s)

    async def poll(self, feed: Feed) -> list[str]:
        """Poll one feed; returns the URLs submitted. A failure is logged and recorded; the
        feed is polled again at its next turn."""
        url = feed.url
        before = await self.registry.state(url)
        validators = {k: before[k] for k in ("etag", "last_modified") if before.get(k)}
        polled_at = str(time.time())
        try:
            page = await self.crawler.fetch(url, kind=XML, validators=validators, key="feed")
            if page.not_modified:
                logger.info("unchanged feed %s 304", url)
                await self.registry.record(url, {"status": "304", "polled_at": polled_at,
                                                 "new": "0", "error": ""})
                return []
            entries = await self._entries(page)
        except (FetchError, HostBusy, SourceError) as exc:
            logger.warning("feed failed %s: %s (again in %d s)", url, exc, feed.every_s)
            await self.registry.record(url, {"polled_at": polled_at, "error": str(exc),
                                             "status": str(getattr(exc, "status", "") or "")})
            return []
        new = await self.registry.unseen(url, entries)
        # Submitted before being marked seen: a crash in between submits them again, which the
        # fetcher skips as already fetched, rather than never.
        await self.submit([ArticleSubmitted(url=u, source="feed") for u in new])
        await self.registry.mark_seen(url, entries)
        await self.registry.record(url, {
            "status": str(page.status), "polled_at": polled_at, "entries": str(len(entries)),
            "new": str(len(new)), "error": "", "etag": page.etag or "",
            "last_modified": page.last_modified or "",
        })
        logger.info("polled feed %s %d: %d entries, %d new", url, page.status, len(entries),
                    len(new))
        return new

    async def _entries(self, page: FetchedPage) -> list[str]:
        cap = self.settings.max_source_bytes
        body = gunzipped(page.raw, cap)
        if not is_sitemap(body):
            return feed_entries(body, page.final_url)

        async def fetch(u: str) -> FetchedPage:
            return page if u == page.url else await self.crawler.fetch(u, kind=XML, key="feed")

        return await expand_sitemap(fetch, page.url, cap, self.settings.max_sitemaps)
