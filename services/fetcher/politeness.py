"""Politeness shared by every replica through Redis: a per-host concurrency cap and delay, and
each site's robots.txt (cached, with its Crawl-delay)."""

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aioredis
from protego import Protego

from shared import keys
from shared.errors import TransientError

logger = logging.getLogger("newsflow.fetcher")

# One round trip decides, atomically for every replica: drop expired leases; if the host's next
# start time has not come, say how long to wait; if all its slots are taken, say -1; otherwise
# take a slot and push the next start time by the delay. Redis's clock is the only clock, so
# replicas with skewed clocks agree.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local next_start = tonumber(redis.call('GET', KEYS[2]) or '0')
if next_start > now then
  return next_start - now
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return -1
end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
local delay = tonumber(ARGV[3])
if delay > 0 then
  redis.call('SET', KEYS[2], now + delay, 'PX', delay)
end
return 0
"""

# Push the host's next start time to at least now + ARGV[1] ms (a 429 or 503 asked us to wait).
_BACK_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local next_start = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > next_start then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]))
end
return 0
"""

_FULL_POLL_S = (0.02, 0.1)
"""How often a waiter looks again at a host whose slots are all taken (a random pick, so
replicas do not poll in step)."""


class HostBusy(TransientError):
    """A host's slot did not come within the wait allowed (its cap or delay is in use)."""

    def __init__(self, host: str, waited_s: float, ready_in_s: float | None = None) -> None:
        later = f"; next request in {ready_in_s:.0f} s" if ready_in_s is not None else ""
        super().__init__(f"host {host} busy: no slot after {waited_s:.1f} s{later}")
        self.host = host
        self.ready_in_s = ready_in_s
        """How long until the host may be asked again (its delay or a Retry-After), when it is
        that and not its slots that keep the request waiting."""


class HostGate:
    """Per-host concurrency cap and least delay between requests, for every replica at once."""

    def __init__(self, client: aioredis.Redis, concurrency: int, lease_s: float) -> None:
        """`lease_s` bounds how long a slot is held: longer than any request may take."""
        self.client = client
        self.concurrency = concurrency
        self.lease_ms = int(lease_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._back_off = client.register_script(_BACK_OFF)

    @contextlib.asynccontextmanager
    async def slot(self, host: str, delay_s: float, max_wait_s: float) -> AsyncIterator[None]:
        """Hold one of `host`'s slots while the body runs; the next request to `host` starts no
        sooner than `delay_s` after this one. Waiting yields to the event loop, so other hosts'
        fetches go on. Raises HostBusy after `max_wait_s`."""
        token = secrets.token_hex(8)
        started = time.monotonic()
        while True:
            wait_ms = int(
                await self._acquire(
                    keys=[keys.host_slots(host), keys.host_next(host)],
                    args=[token, self.concurrency, int(delay_s * 1000), self.lease_ms],
                )
            )
            if wait_ms == 0:
                break
            wait_s = wait_ms / 1000 if wait_ms > 0 else random.uniform(*_FULL_POLL_S)  # noqa: S311 -- jitter, not security
            waited = time.monotonic() - started
            if waited + wait_s > max_wait_s:
                raise HostBusy(host, waited, wait_s if wait_ms > 0 else None)
            await asyncio.sleep(wait_s)
        try:
            yield
        finally:
            # Shielded: a cancelled fetch must still give its slot back.
            await asyncio.shield(self.client.zrem(keys.host_slots(host), token))

    async def back_off(self, host: str, seconds: float) -> None:
        """No request to `host` from any replica for `seconds` (it said Retry-After)."""
        if seconds > 0:
            await self._back_off(keys=[keys.host_next(host)], args=[int(seconds * 1000)])


@dataclass(frozen=True)
class RobotsTxt:
    """A site's robots.txt as newsflow reads it."""

    origin: str
    status: str
    """"ok" (parsed), "missing" (4xx: everything allowed) or "unreachable" (5xx, network:
    nothing allowed for now, RFC 9309)."""
    body: str = ""
    reason: str = ""

    def parser(self) -> Protego:
        return Protego.parse(self.body)

    def allows(self, url: str, user_agent: str) -> bool:
        if self.status == "missing":
            return True
        return self.status == "ok" and self.parser().can_fetch(url, user_agent)

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.status != "ok":
            return None
        parser = self.parser()
        delay = parser.crawl_delay(user_agent)
        rate = parser.request_rate(user_agent)
        if rate is not None and rate.requests:
            delay = max(delay or 0.0, rate.seconds / rate.requests)
        return delay


RobotsFetcher = Callable[[str], Awaitable[RobotsTxt]]
"""Fetches the robots.txt of an origin (from the network)."""

_UNREACHABLE_TTL_S = 60
"""An unreachable robots.txt is asked for again after this long, not after robots_cache_s."""


def origin_of(url: str) -> str:
    """scheme://host:port of a URL: the scope of one robots.txt (RFC 9309)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}:{port}"


# Delete the lock only if it is still ours (it may have expired and been taken by another).
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_LOCK_POLL_S = (0.05, 0.15)
"""How often a replica waiting for another's robots.txt fetch looks in the cache."""


class RobotsCache:
    """robots.txt per origin, kept in Redis for `ttl_s` so replicas fetch it once between them.

    One fetch per origin at a time: concurrent fetches in a replica share one request (a single
    flight), and across replicas a lock in Redis (expiring after `lock_s`, the longest a robots.txt
    fetch may take) makes the others wait for the answer in the cache."""

    def __init__(self, client: aioredis.Redis, ttl_s: int, lock_s: float = 60.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.lock_ms = max(1, int(lock_s * 1000))
        self._flights: dict[str, asyncio.Future[RobotsTxt]] = {}
        self._unlock = client.register_script(_UNLOCK)

    async def cached(self, origin: str) -> RobotsTxt | None:
        raw: Any = await self.client.get(keys.robots(origin))
        if raw is None:
            return None
        data = json.loads(raw)
        return RobotsTxt(origin, data["status"], data.get("body", ""), data.get("reason", ""))

    async def store(self, robots: RobotsTxt) -> None:
        ttl = _UNREACHABLE_TTL_S if robots.status == "unreachable" else self.ttl_s
        value = json.dumps({"status": robots.status, "body": robots.body, "reason": robots.reason})
        await self.client.set(keys.robots(robots.origin), value, ex=max(1, ttl))

    async def get(self, origin: str, fetch: RobotsFetcher) -> RobotsTxt:
        """The origin's robots.txt, from the cache, else fetched with `fetch` (once, however many
        ask at the same time) and cached."""
        robots = await self.cached(origin)
        if robots is not None:
            return robots
        flight = self._flights.get(origin)
        if flight is None:
            flight = asyncio.ensure_future(self._fetch_once(origin, fetch))
            self._flights[origin] = flight
            flight.add_done_callback(lambda _: self._flights.pop(origin, None))
        # Shielded: one caller cancelled (its delivery timed out) must not cancel the others'.
        return await asyncio.shield(flight)

    async def _fetch_once(self, origin: str, fetch: RobotsFetcher) -> RobotsTxt:
        """Fetch and cache the robots.txt unless another replica is doing it: then its answer,
        from the cache (or our own fetch, if its lock expires first)."""
        lock, token = keys.robots_lock(origin), secrets.token_hex(8)
        while not await self.client.set(lock, token, nx=True, px=self.lock_ms):
            await asyncio.sleep(random.uniform(*_LOCK_POLL_S))  # noqa: S311 -- jitter, not security
            robots = await self.cached(origin)
            if robots is not None:
                return robots
        try:
            robots = await self.cached(origin)  # cached while we waited for the lock
            if robots is None:
                robots = await fetch(origin)
                await self.store(robots)
                logger.info("robots %s %s%s", origin, robots.status,
                            f" ({robots.reason})" if robots.reason else "")
            return robots
        finally:
            await asyncio.shield(self._unlock(keys=[lock], args=[token]))
