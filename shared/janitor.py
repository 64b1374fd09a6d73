"""Housekeeping every stage runs (one replica at a time): forget consumers that are gone, and
trim streams so they do not grow without bound — never dropping what a group has not finished."""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared import keys
from shared.settings import Settings
from shared.streams import DEAD, INDEXED, STAGES, Stream

logger = logging.getLogger("newsflow.janitor")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Sweep:
    """What one pass did."""

    consumers_removed: int = 0
    entries_trimmed: int = 0


async def remove_gone_consumers(
    client: aioredis.Redis, stream: Stream, idle_ms: int
) -> list[str]:
    """Delete the consumers of `stream`'s group that have been silent for `idle_ms` and hold
    nothing pending (deleting one that holds entries would drop them from the pending list).

    "Silent" is Redis's `idle`: since the consumer's last read on Redis/Valkey ≥ 7.2, since the
    last read that delivered something before (7.0). So on 7.0 a live replica with no work may
    be forgotten too — harmless, as it holds nothing and its next delivery brings it back."""
    if stream.group is None or not await client.exists(stream.name):
        return []
    removed = []
    consumers: Any = await client.xinfo_consumers(stream.name, stream.group)
    for consumer in consumers:
        name = _text(consumer["name"])
        silent = int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_ms
        # Re-checked in one script: the consumer may have been handed entries since.
        if silent and int(await client.eval(_DELETE_IF_EMPTY, 1, stream.name, stream.group,
                                            name)):
            removed.append(name)
    return removed


# Delete a consumer only if it holds nothing, atomically (no read can slip in between).
_DELETE_IF_EMPTY = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


async def safe_trim_point(client: aioredis.Redis, stream: str) -> str | None:
    """The newest id below which every group has read and acknowledged everything, or None.

    That is the smallest of each group's last-delivered id and oldest pending id."""
    if not await client.exists(stream):
        return None
    groups: Any = await client.xinfo_groups(stream)
    if not groups:
        return None
    bounds: list[str] = []
    for group in groups:
        bounds.append(_text(group["last-delivered-id"]))
        if int(group["pending"]):
            oldest: Any = await client.xpending_range(stream, _text(group["name"]), "-", "+", 1)
            if oldest:
                bounds.append(_text(oldest[0]["message_id"]))
    lowest = min(bounds, key=_id)
    return None if lowest == "0-0" else lowest


# Entries of a stream after an id, counted inside Redis (only the count crosses the wire), up
# to a cap; exclusive ranges "(id" need Redis 6.2.
_COUNT_AFTER = """
local n, start, cap = 0, '(' .. ARGV[1], tonumber(ARGV[2])
while n < cap do
  local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
  n = n + #page
  if #page < 100 then break end
  start = '(' .. page[#page][1]
end
return math.min(n, cap)
"""

LAG_COUNT_CAP = 100_000
"""The most entries group_lag counts itself (a backlog longer than that shows as this)."""


async def group_lag(client: aioredis.Redis, stream: str, group: dict[Any, Any]) -> int:
    """Entries of `stream` the group has not read yet, from its XINFO GROUPS row — correct
    even where Redis's own `lag` is not.

    Redis derives `lag` from a counter of entries read. After it reloads its append-only file
    that counter can be unknown (`entries-read` null: Redis 7.0 then estimates or says null) or
    stale (a lag of hundreds with everything read), so it is trusted only when the counter is
    known and something is left to read; otherwise the entries after the group's
    last-delivered id are counted."""
    last = _text(group["last-delivered-id"])
    if not int(await client.eval(_COUNT_AFTER, 1, stream, last, 1)):
        return 0
    reported, read = group.get("lag"), group.get("entries-read")
    if reported is not None and read is not None and int(reported) > 0:
        return int(reported)
    return int(await client.eval(_COUNT_AFTER, 1, stream, last, LAG_COUNT_CAP))


async def trim_acknowledged(client: aioredis.Redis, stream: str) -> int:
    """XTRIM MINID up to what every group has finished (`XADD MAXLEN` would ignore groups)."""
    point = await safe_trim_point(client, stream)
    if point is None:
        return 0
    # MINID keeps entries >= point: the oldest pending (or next unread) entry itself stays.
    return int(await client.xtrim(stream, minid=point, approximate=False))


async def trim_keeping(client: aioredis.Redis, stream: str, keep: int) -> int:
    """Trim `stream` to its newest `keep` entries, but never an entry a group has not finished
    (`XTRIM MAXLEN` would drop those too)."""
    excess = int(await client.xlen(stream)) - keep
    if excess <= 0:
        return 0
    groups: Any = await client.xinfo_groups(stream)
    point = await safe_trim_point(client, stream)
    if groups and point is None:
        return 0  # a group has finished nothing yet
    oldest: Any = await client.xrange(stream, "-", f"({point}" if point else "+", count=excess)
    if not oldest:
        return 0
    ms, seq = _id(_text(oldest[-1][0]))
    return int(await client.xtrim(stream, minid=f"{ms}-{seq + 1}", approximate=False))


async def sweep(client: aioredis.Redis, settings: Settings) -> Sweep:
    """One pass over every stage's stream, plus the bounded "done" stream."""
    done = Sweep()
    for stream in STAGES:
        done.consumers_removed += len(
            await remove_gone_consumers(client, stream, settings.consumer_gone_ms)
        )
        if stream != INDEXED:
            done.entries_trimmed += await trim_acknowledged(client, stream.name)
    # Publishers that wait follow the newest entries of "indexed": those are kept even when the
    # watcher has finished them, and nothing the watcher has not finished is dropped.
    done.entries_trimmed += await trim_keeping(client, INDEXED.name, settings.indexed_keep)
    done.entries_trimmed += await trim_dead_letters(client, settings)
    return done


async def trim_dead_letters(client: aioredis.Redis, settings: Settings) -> int:
    """Drop the dead letters older than `dead_retention_days`, then the oldest beyond
    `dead_max` (an entry id starts with the time it was added, in ms)."""
    oldest_kept_ms = int((time.time() - settings.dead_retention_days * 86_400) * 1000)
    trimmed = int(await client.xtrim(DEAD.name, minid=oldest_kept_ms, approximate=False))
    trimmed += int(await client.xtrim(DEAD.name, maxlen=settings.dead_max, approximate=False))
    return trimmed


async def run_janitor(client: aioredis.Redis, settings: Settings, owner: str) -> None:
    """Sweep every `janitor_interval_s`, on whichever replica takes the lock first."""
    while True:
        await asyncio.sleep(settings.janitor_interval_s)
        try:
            lease = max(1, settings.janitor_interval_s)
            if await client.set(keys.JANITOR_LOCK, owner, nx=True, ex=lease):
                done = await sweep(client, settings)
                if done.consumers_removed or done.entries_trimmed:
                    logger.info("janitor removed %d gone consumers, trimmed %d entries",
                                done.consumers_removed, done.entries_trimmed)
        except Exception:
            # Housekeeping must never take a stage down; the next pass tries again.
            logger.exception("janitor pass failed")
