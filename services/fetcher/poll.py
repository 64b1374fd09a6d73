"""Poll the feeds that are due (conditional GET) and submit the entries not seen before."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import XML, FetchedPage
from services.fetcher.sources import source_fetch
from shared.errors import NewsflowError, TransientError
from shared.messages import ArticleSubmitted
from shared.settings import Settings
from shared.sources.expand import Expansion, Failure, Limits, expand, since_cutoff
from shared.sources.registry import Feed, FeedRegistry

logger = logging.getLogger("newsflow.scheduler")

Submit = Callable[[list[ArticleSubmitted]], Awaitable[None]]
"""Adds articles to articles:submitted."""

_ERRORS_SHOWN = 3
"""Failures spelled out in a feed's recorded error; the rest are counted."""


class FeedPoller:
    """Polls registered feeds and sitemaps; each new entry becomes one submitted article."""

    def __init__(
        self, registry: FeedRegistry, crawler: Crawler, submit: Submit, settings: Settings
    ) -> None:
        self.registry = registry
        self.crawler = crawler
        self.submit = submit
        self.settings = settings
        self._fetch = source_fetch(crawler, "feed")

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
        """Poll one feed; returns the URLs submitted. Whatever part of it reads is submitted;
        the files that fail (the feed itself, sitemaps of its index) are recorded and retried
        with backoff."""
        url = feed.url
        before = await self.registry.state(url)
        failing = await self.registry.failing(url)
        validators = {k: before[k] for k in ("etag", "last_modified") if before.get(k)}
        polled_at = str(time.time())
        limits = Limits.of(self.settings, since_cutoff(feed.since))
        try:
            page = await self.crawler.fetch(url, kind=XML, validators=validators, key="feed")
        except NewsflowError as exc:
            await self._failed(feed, Failure(url, url, str(exc), isinstance(exc, TransientError)),
                               polled_at, status=str(getattr(exc, "status", "") or ""))
            return []
        if page.not_modified:
            # The feed or index is unchanged, but sitemaps of it that failed are due again.
            retry = [f for f, failure in failing.items()
                     if f != url and failure.retry_at <= time.time()]
            if not retry:
                logger.info("unchanged feed %s 304", url)
                await self.registry.record(url, {"status": "304", "polled_at": polled_at,
                                                 "new": "0", "error": ""})
                return []
            expansion = await expand(self._fetch, retry, limits)
        else:
            expansion = await expand(
                self._fetch, [url], limits, fetched={url: page},
                deferred={f: failure.retry_at for f, failure in failing.items()})
            # A failing sitemap the index no longer lists is forgotten with the ones read.
            listed = {f.url for f in expansion.failures} | set(expansion.deferred)
            expansion.read += [f for f in failing if f not in listed and f != url]
        return await self._settle(feed, page, expansion, polled_at)

    async def _failed(self, feed: Feed, failure: Failure, polled_at: str, status: str) -> None:
        """The feed itself failed: record it, and poll it again after its backoff."""
        (recorded,) = (await self.registry.settle(
            feed.url, feed.every_s, [(failure.url, failure.reason, failure.transient)], [],
        )).values()
        await self.registry.reschedule(feed.url, recorded.retry_at)
        logger.warning("feed failed %s: %s (attempt %d, again in %.0f s)", feed.url,
                       failure.reason, recorded.attempts, recorded.retry_at - time.time())
        await self.registry.record(feed.url, {"polled_at": polled_at, "error": failure.reason,
                                              "status": status})

    async def _settle(
        self, feed: Feed, page: FetchedPage, expansion: Expansion, polled_at: str
    ) -> list[str]:
        url = feed.url
        root_failure = next((f for f in expansion.failures if f.url == url), None)
        recorded = await self.registry.settle(
            url, feed.every_s, [(f.url, f.reason, f.transient) for f in expansion.failures],
            expansion.read)
        entries = expansion.urls
        new = await self.registry.unseen(url, entries)
        # Submitted before being marked seen: a crash in between submits them again, which the
        # fetcher skips as already fetched, rather than never.
        await self.submit([ArticleSubmitted(url=u, source="feed") for u in new])
        await self.registry.mark_seen(url, entries)
        state = {
            "polled_at": polled_at, "entries": str(len(entries)), "new": str(len(new)),
            "failed": str(len(expansion.failures)), "skipped": str(expansion.skipped),
            "error": _errors(expansion),
        }
        if not page.not_modified:
            state["status"] = str(page.status)
            # Validators are kept only when the feed itself was read: otherwise the next poll
            # must read it again rather than hear 304.
            state["etag"] = "" if root_failure else page.etag or ""
            state["last_modified"] = "" if root_failure else page.last_modified or ""
        await self.registry.record(url, state)
        if root_failure is not None:
            await self.registry.reschedule(url, recorded[url].retry_at)
        logger.info("polled feed %s %d: %s, %d new", url, page.status, expansion.summary(),
                    len(new))
        return new


def _errors(expansion: Expansion) -> str:
    failures = expansion.failures
    shown = "; ".join(f.reason for f in failures[:_ERRORS_SHOWN])
    if len(failures) > _ERRORS_SHOWN:
        shown += f"; and {len(failures) - _ERRORS_SHOWN} more"
    return shown
