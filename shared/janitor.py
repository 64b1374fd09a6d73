"""Housekeeping every stage runs (one replica at a time): forget consumers that are gone, and
trim streams so they do not grow without bound — never dropping what a group has not finished."""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared import keys
from shared.settings import Settings
from shared.streams import INDEXED, STAGES, Stream

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
    nothing pending (deleting one that holds entries would drop them from the pending list)."""
    if stream.group is None or not await client.exists(stream.name):
        return []
    removed = []
    consumers: Any = await client.xinfo_consumers(stream.name, stream.group)
    for consumer in consumers:
        name = _text(consumer["name"])
        if int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_ms:
            # Re-checked by Redis itself: DELCONSUMER returns the pending count it dropped.
            dropped = await client.xgroup_delconsumer(stream.name, stream.group, name)
            if int(dropped):
                logger.error("consumer %s of %s held %s entries when deleted", name,
                             stream.name, dropped)
            removed.append(name)
    return removed


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
    return done


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
