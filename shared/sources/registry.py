"""The registered feeds in Redis: what `newsflow feeds` edits and the scheduler polls, and the
files of each that failed, retried with backoff."""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from shared import keys

# Take the feeds that are due and push each one's next due time by its interval, in one step,
# so two scheduler replicas never poll the same feed for the same turn.
_CLAIM_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, url in ipairs(due) do
  local registration = redis.call('HGET', KEYS[2], url)
  if registration then
    local every = tonumber(cjson.decode(registration)['every_s'])
    redis.call('ZADD', KEYS[1], now + every, url)
    table.insert(out, url)
    table.insert(out, registration)
  else
    redis.call('ZREM', KEYS[1], url)
  end
end
return out
"""

SEEN_KEEP_S = 30 * 86_400
"""An entry no longer listed by its feed is forgotten after this long (feeds list recent items,
so one that dropped off does not come back)."""

RETRY_FIRST_S = 60.0
"""A file that failed for a passing reason (a timeout, a 5xx) is tried again after a minute,
then two, four… up to the feed's interval."""
RETRY_MAX_S = 86_400.0
"""A file that failed for good (a 404, not a sitemap) is tried again after the feed's interval,
then two, four… intervals, up to a day (or the interval when that is longer)."""


def backoff_s(attempts: int, every_s: int, transient: bool) -> float:
    """How long after its `attempts`-th failure in a row a file is tried again."""
    doubling = 2.0 ** min(max(attempts, 1) - 1, 30)
    if transient:
        return min(float(every_s), RETRY_FIRST_S * doubling)
    return min(max(float(every_s), RETRY_MAX_S), every_s * doubling)


@dataclass(frozen=True)
class Failing:
    """A file of a feed that failed `attempts` times in a row; not fetched before `retry_at`."""

    attempts: int
    retry_at: float
    error: str


@dataclass(frozen=True)
class Feed:
    """A registered feed or sitemap."""

    url: str
    every_s: int
    added_at: float
    since: str = ""
    """Entries older than this are not submitted: a date ("2025-01-31") or an age ("2d")."""
    next_due: float | None = None
    state: dict[str, str] = field(default_factory=dict)
    """Its last poll: status, entries, new, polled_at, error, etag, last_modified."""


def _feed(url: str, registration: Any, **extra: Any) -> Feed:
    data = json.loads(registration)
    return Feed(url=url, every_s=int(data["every_s"]), added_at=float(data["added_at"]),
                since=str(data.get("since") or ""), **extra)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FeedRegistry:
    """Feeds by URL, each with its poll interval, next due time, last poll and seen entries."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._claim = client.register_script(_CLAIM_DUE)

    async def add(self, url: str, every_s: int, since: str = "") -> Feed:
        """Register (or re-register with a new interval) a feed, due at once."""
        now = time.time()
        registration = json.dumps({"every_s": every_s, "added_at": now, "since": since})
        async with self.client.pipeline(transaction=True) as tx:
            tx.hset(keys.FEEDS, url, registration)
            tx.zadd(keys.FEEDS_DUE, {url: now})
            await tx.execute()
        return Feed(url=url, every_s=every_s, added_at=now, since=since, next_due=now)

    async def remove(self, url: str) -> bool:
        """Forget a feed, its state and the entries seen in it; False if it was not registered."""
        async with self.client.pipeline(transaction=True) as tx:
            tx.hdel(keys.FEEDS, url)
            tx.zrem(keys.FEEDS_DUE, url)
            tx.delete(keys.feed_state(url), keys.feed_seen(url), keys.feed_failing(url))
            removed, *_ = await tx.execute()
        return bool(removed)

    async def feeds(self) -> list[Feed]:
        """Every registered feed with its next due time and last poll, by URL."""
        registrations: Any = await self.client.hgetall(keys.FEEDS)
        out = []
        for raw_url, registration in sorted(registrations.items()):
            url = _text(raw_url)
            due: Any = await self.client.zscore(keys.FEEDS_DUE, url)
            out.append(_feed(url, registration, next_due=due, state=await self.state(url)))
        return out

    async def claim_due(self, limit: int = 20) -> list[Feed]:
        """The feeds due now, each rescheduled one interval later (for every replica at once)."""
        flat: Any = await self._claim(keys=[keys.FEEDS_DUE, keys.FEEDS], args=[limit])
        return [_feed(_text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def state(self, url: str) -> dict[str, str]:
        raw: Any = await self.client.hgetall(keys.feed_state(url))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def record(self, url: str, state: dict[str, str]) -> None:
        """Store the outcome of a poll (only while the feed is still registered)."""
        if await self.client.hexists(keys.FEEDS, url):
            mapping: dict[Any, Any] = dict(state)  # redis-py's Mapping type is invariant
            await self.client.hset(keys.feed_state(url), mapping=mapping)

    async def unseen(self, url: str, entries: list[str]) -> list[str]:
        """The entries of `url` not seen in it before, in order."""
        if not entries:
            return []
        scores: Any = await self.client.zmscore(keys.feed_seen(url), entries)
        return [entry for entry, score in zip(entries, scores, strict=True) if score is None]

    async def mark_seen(self, url: str, entries: list[str]) -> None:
        """Remember `entries` as seen in `url` now, and forget entries long gone from it."""
        now = time.time()
        async with self.client.pipeline(transaction=True) as tx:
            if entries:
                tx.zadd(keys.feed_seen(url), dict.fromkeys(entries, now))
            tx.zremrangebyscore(keys.feed_seen(url), "-inf", now - SEEN_KEEP_S)
            await tx.execute()

    async def failing(self, url: str) -> dict[str, Failing]:
        """The files of `url` (itself, sitemaps of its index) that failed, by file URL."""
        raw: Any = await self.client.hgetall(keys.feed_failing(url))
        return {_text(k): Failing(**json.loads(v)) for k, v in raw.items()}

    async def settle(
        self, url: str, every_s: int, failed: Sequence[tuple[str, str, bool]],
        read: Sequence[str],
    ) -> dict[str, Failing]:
        """Record a poll's failed files ((file URL, error, transient) each, retried with backoff)
        and forget the failures of the files it read; returns the failures recorded."""
        before = await self.failing(url)
        now = time.time()
        recorded = {}
        for file_url, error, transient in failed:
            attempts = before[file_url].attempts + 1 if file_url in before else 1
            recorded[file_url] = Failing(attempts, now + backoff_s(attempts, every_s, transient),
                                         error)
        async with self.client.pipeline(transaction=True) as tx:
            if read:
                tx.hdel(keys.feed_failing(url), *read)
            if recorded:
                tx.hset(keys.feed_failing(url), mapping={
                    k: json.dumps(vars(v)) for k, v in recorded.items()})
            await tx.execute()
        return recorded

    async def reschedule(self, url: str, due: float) -> None:
        """Make a registered feed due at `due` (Unix seconds) instead of its next turn."""
        await self.client.zadd(keys.FEEDS_DUE, {url: due}, xx=True)
