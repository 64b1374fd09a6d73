"""Fetch like a good citizen: robots.txt, per-host politeness, retries with backoff, conditional
GET, and what to do with a submitted article (fetch it, skip it, or put it back in the queue)."""

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from services.fetcher.fetch import (
    PAGE,
    ROBOTS,
    DocumentKind,
    FetchedPage,
    FetchFailed,
    FetchRefused,
    FetchUnavailable,
    Resolver,
    fetch_page,
    resolve_host,
)
from services.fetcher.politeness import HostBusy, HostGate, RobotsCache, RobotsTxt, origin_of
from shared import keys
from shared.messages import (
    ArticleFetched,
    ArticleIndexed,
    ArticleSubmitted,
    without_credentials,
)
from shared.settings import Settings
from shared.streams import DATA_FIELD, FETCHED, INDEXED, SUBMITTED, Stream

logger = logging.getLogger("newsflow.fetcher")

_LEASE_MARGIN_S = 5.0

_PARK_AFTER_S = 30.0
"""A host free again sooner than this: the article goes back to the end of the queue (cheap, and
the replica serves other hosts meanwhile). Later: it is parked until then, not cycled through
the queue thousands of times."""

# Park: the member is the article's message, the score when it is due (Redis's clock).
_PARK = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(ARGV[1]), ARGV[2])
return 0
"""

# Unpark: the articles now due go back to articles:submitted, each moved once, atomically, by
# whichever replica runs this first.
_UNPARK = """
local t = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]),
                       'LIMIT', 0, tonumber(ARGV[1]))
for _, message in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', ARGV[2], message)
  redis.call('ZREM', KEYS[1], message)
end
return #due
"""


class DisallowedByRobots(FetchFailed):
    """The site's robots.txt forbids newsflow's user agent to fetch the URL."""


@dataclass(frozen=True)
class Outcome:
    """What the fetcher emits for one submitted article, and where."""

    stream: Stream
    event: ArticleFetched | ArticleIndexed | ArticleSubmitted
    page: FetchedPage | None = None
    """The fetch to remember once the event is published (None: nothing to remember)."""


class FetchHistory:
    """What was fetched before, per article id: its presence means "already fetched", and its
    ETag / Last-Modified make the next fetch conditional."""

    def __init__(self, client: aioredis.Redis, days: int) -> None:
        self.client = client
        self.ttl_s = max(1, days) * 86_400

    async def last(self, article_id: str) -> dict[str, str] | None:
        raw: Any = await self.client.hgetall(keys.fetched(article_id))
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    def record(self, tx: Pipeline, article_id: str, page: FetchedPage) -> None:
        """Add the writes that remember this fetch to `tx` (committed with the fetch's output)."""
        # (redis-py's Mapping type wants every key and value type it can send.)
        fields: dict[Any, Any] = {
            "url": page.url,
            "final_url": without_credentials(page.final_url),
            "status": str(page.status),
            "fetched_at": datetime.now(UTC).isoformat(),
        }
        # A 304 need not repeat the validators; then the ones stored still hold.
        fields |= {k: v for k, v in (("etag", page.etag),
                                     ("last_modified", page.last_modified)) if v}
        tx.hset(keys.fetched(article_id), mapping=fields)
        tx.expire(keys.fetched(article_id), self.ttl_s)


class Parking:
    """Submitted articles whose host asked to be left alone for a while (Retry-After, or a
    delay already that long): kept in Redis until then, then put back in articles:submitted."""

    def __init__(self, client: aioredis.Redis, interval_s: float = 1.0, batch: int = 100) -> None:
        self.client = client
        self.interval_s = interval_s
        self.batch = batch
        self._park = client.register_script(_PARK)
        self._unpark = client.register_script(_UNPARK)

    async def park(self, event: ArticleSubmitted, seconds: float) -> None:
        await self._park(keys=[keys.PARKED], args=[max(0.0, seconds), event.model_dump_json()])

    async def unpark_due(self) -> int:
        """Put the articles now due back in articles:submitted; how many."""
        moved: Any = await self._unpark(keys=[keys.PARKED, SUBMITTED.name],
                                        args=[self.batch, DATA_FIELD])
        return int(moved)

    async def run(self) -> None:
        """Unpark what is due, every `interval_s`, for the life of the replica."""
        while True:
            try:
                moved = await self.unpark_due()
                if moved:
                    logger.info("unparked %d articles: their hosts may be asked again", moved)
                if moved >= self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the next round tries again
                logger.warning("could not unpark due articles", exc_info=True)
            await asyncio.sleep(self.interval_s)


class Crawler:
    """fetch_page with robots.txt, the per-host gate and retries, shared by every replica."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        redis: aioredis.Redis,
        settings: Settings,
        resolve: Resolver = resolve_host,
    ) -> None:
        self.http = http
        self.settings = settings
        self.resolve = resolve
        self.gate = HostGate(
            redis, settings.host_concurrency, settings.fetch_timeout_s + _LEASE_MARGIN_S
        )
        # A robots.txt fetch waits for its host, then takes up to the fetch timeout.
        self.robots = RobotsCache(redis, settings.robots_cache_s, lock_s=settings.host_wait_max_s
                                  + settings.fetch_timeout_s + _LEASE_MARGIN_S)
        self.history = FetchHistory(redis, settings.fetch_history_days)
        self.parking = Parking(redis)

    async def fetch(
        self,
        url: str,
        *,
        kind: DocumentKind = PAGE,
        validators: dict[str, str] | None = None,
        key: str = "",
    ) -> FetchedPage:
        """Fetch `url` if its site's robots.txt allows, within its host's cap and delay, with
        up to settings.fetch_attempts attempts. `key` (an article id) labels the log lines.
        Raises DisallowedByRobots, HostBusy, and what fetch_page raises."""
        settings = self.settings
        try:
            parsed = httpx.URL(url)
            parsed.host  # noqa: B018 -- decodes an IDN host: an invalid one raises IDNAError here
        except (httpx.InvalidURL, UnicodeError) as exc:  # (idna.IDNAError is a UnicodeError)
            raise FetchFailed(url, f"invalid URL ({exc})") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            # fetch_page refuses it with the right reason.
            return await fetch_page(self.http, url, settings, self.resolve, kind=kind)
        host = parsed.host.lower()
        delay = settings.host_delay_s
        if settings.obey_robots:
            try:
                robots = await self.robots.get(origin_of(url), self._fetch_robots)
            except FetchRefused as refused:
                # The guard refused the site itself: say so about the article, not its robots.txt.
                raise FetchRefused(url, refused.reason) from None
            if robots.status == "unreachable":
                raise FetchUnavailable(
                    url, f"robots.txt of {robots.origin} is unreachable ({robots.reason}); "
                    "nothing is fetched from the site until it answers"
                )
            if not robots.allows(url, settings.user_agent):
                raise DisallowedByRobots(
                    url, f"disallowed by robots.txt of {robots.origin} for {settings.user_agent!r}"
                )
            crawl_delay = robots.crawl_delay(settings.user_agent)
            if crawl_delay is not None:
                delay = max(delay, min(crawl_delay, settings.max_crawl_delay_s))
        return await self._with_retries(url, host, delay, kind, validators, key)

    async def _with_retries(
        self, url: str, host: str, delay: float, kind: DocumentKind,
        validators: dict[str, str] | None, key: str,
    ) -> FetchedPage:
        settings = self.settings
        attempts = max(1, settings.fetch_attempts)
        for attempt in range(1, attempts + 1):
            try:
                async with self.gate.slot(host, delay, settings.host_wait_max_s):
                    return await fetch_page(
                        self.http, url, settings, self.resolve, kind=kind, validators=validators
                    )
            except FetchUnavailable as exc:
                retry_after = exc.retry_after_s
                if retry_after is not None:
                    # The host asked everyone to wait, not only this request: all of its URLs
                    # wait (parked when that is long), across every replica.
                    await self.gate.back_off(
                        host, min(retry_after, settings.retry_after_park_max_s))
                if attempt == attempts:
                    raise
                if retry_after is not None and retry_after > settings.retry_after_max_s:
                    # Too long to hold a worker: the delivery is retried later.
                    raise
                # Exponential backoff with full jitter, so replicas do not retry in step.
                wait = random.uniform(0, settings.retry_backoff_s * 2 ** (attempt - 1))  # noqa: S311 -- jitter, not security
                if retry_after is not None:
                    wait = max(wait, retry_after)
                logger.info("retry %s %s in %.1f s (attempt %d of %d): %s", key or "-", url,
                            wait, attempt + 1, attempts, exc.reason)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch_robots(self, origin: str) -> RobotsTxt:
        """Fetch an origin's robots.txt and read its status as RFC 9309 says: 4xx means no rules,
        5xx or no answer means keep off for now."""
        url = f"{origin}/robots.txt"
        host = (httpx.URL(origin).host or "").lower()
        try:
            async with self.gate.slot(host, self.settings.host_delay_s,
                                      self.settings.host_wait_max_s):
                page = await fetch_page(self.http, url, self.settings, self.resolve, kind=ROBOTS)
        except FetchRefused:
            raise
        except FetchUnavailable as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                return RobotsTxt(origin, "missing", reason=exc.reason)  # 408
            return RobotsTxt(origin, "unreachable", reason=exc.reason)
        except FetchFailed as exc:
            return RobotsTxt(origin, "missing", reason=exc.reason)
        return RobotsTxt(origin, "ok", page.raw.decode("utf-8", errors="replace"))

    async def fetch_article(self, event: ArticleSubmitted) -> Outcome | None:
        """Decide and do what the fetcher does with a submitted article: take the HTML given,
        skip a URL fetched before (unless `refresh`), fetch it (conditionally when it was fetched
        before), put it back in the queue when its host is too busy to wait for, or park it
        (None: nothing to emit) when its host asked to be left alone for longer."""
        if event.html is not None:
            size = len(event.html.encode())
            logger.info("received %s %s %d KB of HTML", event.id, event.url or "(no url)",
                        size // 1024)
            return Outcome(FETCHED, ArticleFetched(
                id=event.id, url=event.url, final_url=event.url, html=event.html,
                size_bytes=size, trace=event.traced("fetched"),
            ))
        url = event.url or ""  # ArticleSubmitted guarantees a url when there is no html.
        before = await self.history.last(event.id)
        if before is not None and not event.refresh:
            logger.info("skipped %s %s already fetched (%s); publish --refresh fetches it again",
                        event.id, url, before.get("fetched_at", "?"))
            return Outcome(INDEXED, ArticleIndexed(id=event.id, url=event.url,
                                                   trace=event.traced("fetched")))
        try:
            page = await self.fetch(url, validators=before, key=event.id)
        except (HostBusy, FetchUnavailable) as exc:
            return await self._later(event, url, exc)
        if page.not_modified:
            logger.info("unchanged %s %s 304", event.id, url)
            return Outcome(INDEXED, ArticleIndexed(id=event.id, url=event.url,
                                                   trace=event.traced("fetched")), page)
        logger.info("fetched %s %s %d %d KB %.0f ms", event.id, page.final_url, page.status,
                    page.size_bytes // 1024, page.elapsed_ms)
        return Outcome(FETCHED, ArticleFetched(
            id=event.id, url=event.url, final_url=page.final_url, status=page.status,
            content_type=page.content_type, html=page.html, size_bytes=page.size_bytes,
            elapsed_ms=page.elapsed_ms, trace=event.traced("fetched"),
        ), page)

    async def _later(
        self, event: ArticleSubmitted, url: str, exc: HostBusy | FetchUnavailable
    ) -> Outcome | None:
        """What becomes of an article its host cannot take now: back in the queue (a short
        wait), parked until the host may be asked again (None), or raised on (retried later by
        the delivery; dead for a Retry-After beyond NEWSFLOW_RETRY_AFTER_PARK_MAX_S)."""
        if isinstance(exc, HostBusy):
            if exc.ready_in_s is not None and exc.ready_in_s > _PARK_AFTER_S:
                await self._park(event, exc.ready_in_s, str(exc))
                return None
            logger.info("deferred %s %s: %s; back in the queue", event.id, url, exc)
            return Outcome(SUBMITTED, event)
        wait = exc.retry_after_s
        if wait is None or wait <= self.settings.retry_after_max_s:
            raise exc
        if wait > self.settings.retry_after_park_max_s:
            until = datetime.now(UTC) + timedelta(seconds=wait)
            raise FetchFailed(url, f"{exc.reason}; retry after {until:%Y-%m-%d %H:%M} UTC, "
                                   "beyond NEWSFLOW_RETRY_AFTER_PARK_MAX_S "
                                   f"({self.settings.retry_after_park_max_s:g} s)",
                              exc.status) from None
        await self._park(event, wait, exc.reason)
        return None

    async def _park(self, event: ArticleSubmitted, seconds: float, reason: str) -> None:
        await self.parking.park(event, seconds)
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        logger.info("parked %s %s until %s: %s", event.id, event.url, until.isoformat(
            timespec="seconds"), reason, extra={"article_id": event.id})

    def remembering(
        self, event: ArticleSubmitted, outcome: Outcome
    ) -> Callable[[Pipeline], None] | None:
        """The writes that record the fetch, to commit with its outcome (recorded alone, a crash
        in between would leave the URL marked fetched with nothing downstream)."""
        page = outcome.page
        if page is None:
            return None
        return lambda tx: self.history.record(tx, event.id, page)
