"""What the CLI does to the pipeline through Redis: publish articles, wait for them, report status,
inspect and re-drive dead letters."""

import re
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from shared import replicas
from shared.janitor import group_lag
from shared.messages import ArticleFailed, ArticleIndexed, ArticleSubmitted
from shared.streams import DATA_FIELD, DEAD, INDEXED, STREAMS, SUBMITTED

# redis-py types each reply as the union of every decoding mode; ours are always bytes (entries
# hold compressed pages), so replies are read into variables typed Any.
Redis = aioredis.Redis


async def last_id(client: Redis, stream: str) -> str:
    """The id of the newest entry of `stream` ("0-0" when empty): where a reader starts to see
    only what comes next."""
    newest: Any = await client.xrevrange(stream, count=1)
    return newest[0][0].decode() if newest else "0-0"


async def publish(client: Redis, articles: list[ArticleSubmitted]) -> list[str]:
    """Add the articles to `articles:submitted` in one round trip; returns their entry ids."""
    async with client.pipeline(transaction=False) as pipe:
        for article in articles:
            pipe.xadd(SUBMITTED.name, {DATA_FIELD: article.model_dump_json(exclude_none=True)})
        return [entry_id.decode() for entry_id in await pipe.execute()]


def _body(fields: dict[bytes, bytes]) -> bytes:
    # Imported here: FastStream is heavy, and `status` does not need it.
    from shared.broker import PlainJsonFormat

    body, _ = PlainJsonFormat.parse(fields[DATA_FIELD.encode()])
    return body


@dataclass
class Outcome:
    """How the articles a publisher waited for ended."""

    indexed: set[str] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)
    """Article id → reason."""
    missing: set[str] = field(default_factory=set)
    """Neither indexed nor dead when the wait ran out."""


async def wait_for(
    client: Redis, ids: set[str], start: dict[str, str], timeout: float,
    progress: Any = None,
) -> Outcome:
    """Follow `articles:indexed` and `articles:dead` from `start` (stream → id, taken before
    publishing) until every id has ended in one of them, or `timeout` seconds pass."""
    outcome = Outcome()
    cursor = dict(start)
    deadline = time.monotonic() + timeout
    while ids - outcome.indexed - outcome.dead.keys():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        block = int(min(left, 1.0) * 1000) or 1
        replies: Any = await client.xread(cursor, block=block, count=500)  # type: ignore[arg-type]
        for name, entries in replies or []:
            stream = name.decode()
            for entry_id, fields in entries:
                cursor[stream] = entry_id.decode()
                if stream == INDEXED.name:
                    done = ArticleIndexed.model_validate_json(_body(fields))
                    if done.id in ids and done.id not in outcome.indexed:
                        outcome.indexed.add(done.id)
                        if progress:
                            progress(done.id, None)
                else:
                    failed = ArticleFailed.model_validate_json(_body(fields))
                    if failed.id in ids and failed.id not in outcome.dead:
                        outcome.dead[failed.id] = f"{failed.reason} (at {failed.group})"
                        if progress:
                            progress(failed.id, failed.reason)
    outcome.missing = ids - outcome.indexed - outcome.dead.keys()
    return outcome


async def wait_start(client: Redis) -> dict[str, str]:
    return {INDEXED.name: await last_id(client, INDEXED.name),
            DEAD.name: await last_id(client, DEAD.name)}


@dataclass
class StreamStatus:
    """One stream at a glance: is work piling up, is anything stuck?"""

    stream: str
    length: int
    group: str | None = None
    consumers: int = 0
    pending: int = 0
    lag: int | None = None
    oldest_pending_s: float | None = None


LIVE_IDLE_MS = 30_000
"""A consumer without a heartbeat (a replica of an older version) counts as live while it has
tried to read within this time: a running replica reads at least every NEWSFLOW_POLL_MS."""


@dataclass
class ReplicaStatus:
    """One live replica of a stage: its consumer, where it serves /metrics, how long since it
    last got an entry, and what it holds."""

    stage: str
    consumer: str
    metrics: str | None
    idle_s: float | None
    """None: it has been handed nothing yet (and, before Redis 7.2, is no consumer yet)."""
    pending: int


async def live_consumers(client: Redis) -> list[ReplicaStatus]:
    """The consumers of every stage's group that belong to running replicas: those with a
    current heartbeat (shared/replicas.py), or, without one, that read recently. A replica
    that is gone stays in its group until the janitor forgets it; it is not counted."""
    beating = await replicas.live_replicas(client)
    found: list[ReplicaStatus] = []
    for stream in STREAMS:
        if not stream.group or not await client.exists(stream.name):
            continue
        try:
            consumers: Any = await client.xinfo_consumers(stream.name, stream.group)
        except aioredis.ResponseError:  # no such group yet
            continue
        for consumer in consumers:
            name = _text(consumer["name"])
            replica = beating.get(name)
            if replica is None and int(consumer["idle"]) >= LIVE_IDLE_MS:
                continue
            # `inactive` (Redis ≥ 7.2): since it last got an entry; `idle`: since it last read.
            idle_ms = consumer.get("inactive", consumer["idle"])
            if idle_ms is None or int(idle_ms) < 0:  # -1: never got one
                idle_ms = consumer["idle"]
            idle, pending = int(idle_ms) / 1000, int(consumer["pending"])
            # A stage reading two streams (the watcher) is one replica, listed once.
            same = next((r for r in found if (r.stage, r.consumer) == (stream.group, name)), None)
            if same is None:
                found.append(ReplicaStatus(stream.group, name,
                                           replica.metrics if replica else None, idle, pending))
            else:
                same.pending += pending
                same.idle_s = idle if same.idle_s is None else min(same.idle_s, idle)
    # Before Redis 7.2 a read that delivers nothing creates no consumer: a running replica that
    # has been handed nothing yet is known by its heartbeat alone.
    groups = {stream.group for stream in STREAMS if stream.group}
    seen = {r.consumer for r in found}
    found += [ReplicaStatus(r.stage, r.consumer, r.metrics, None, 0)
              for r in beating.values() if r.consumer not in seen and r.stage in groups]
    order = {stream.group: n for n, stream in enumerate(STREAMS) if stream.group}
    return sorted(found, key=lambda r: (order.get(r.stage, len(order)), r.consumer))


async def status(client: Redis) -> list[StreamStatus]:
    """Length of every stream; for each stage's group its live consumers, pending, lag and the
    age of its oldest pending entry."""
    live = await live_consumers(client)
    report = []
    for stream in STREAMS:
        row = StreamStatus(stream.name, int(await client.xlen(stream.name)))
        report.append(row)
        if not stream.group or not await client.exists(stream.name):
            continue
        row.group = stream.group
        groups: Any = await client.xinfo_groups(stream.name)
        info = next((g for g in groups if _text(g["name"]) == stream.group), None)
        if info is None:
            continue
        row.consumers = sum(1 for r in live if r.stage == stream.group)
        row.pending = int(info["pending"])
        row.lag = await group_lag(client, stream.name, info)
        oldest: Any = await client.xpending_range(stream.name, stream.group, "-", "+", 1)
        if oldest:
            row.oldest_pending_s = int(oldest[0]["time_since_delivered"]) / 1000
    return report


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def dead_letters(client: Redis, count: int = 100) -> list[tuple[str, ArticleFailed]]:
    """The newest dead letters, newest first: (entry id in `articles:dead`, the failure)."""
    entries: Any = await client.xrevrange(DEAD.name, count=count)
    return [(entry_id.decode(), ArticleFailed.model_validate_json(_body(fields)))
            for entry_id, fields in entries]


_ENTRY_ID = re.compile(r"\d+(-\d+)?")


async def find_dead(client: Redis, key: str) -> tuple[str, ArticleFailed]:
    """The dead letter `key` names: its entry id in `articles:dead` (`1712345678901-0`), or an
    article id (the newest letter of that article). KeyError when there is none."""
    if _ENTRY_ID.fullmatch(key):
        found: Any = await client.xrange(DEAD.name, key, key)
        if found:
            return found[0][0].decode(), ArticleFailed.model_validate_json(_body(found[0][1]))
        raise KeyError(f"no dead letter {key}")
    end = "+"
    while True:
        page: Any = await client.xrevrange(DEAD.name, end, "-", count=500)
        for entry_id, fields in page:
            failed = ArticleFailed.model_validate_json(_body(fields))
            if failed.id == key:
                return entry_id.decode(), failed
        if len(page) < 500:
            raise KeyError(f"no dead letter {key} (neither an entry id nor an article id "
                           "that failed)")
        end = "(" + page[-1][0].decode()


async def retry_dead(client: Redis, keys: list[str] | None) -> int:
    """Put dead letters back on the stream they failed on (their original entry, as it was) and
    remove them from `articles:dead`. Each key is an entry id of `articles:dead` or an article
    id; all of them when `keys` is None. A letter whose original was cut (over
    NEWSFLOW_DEAD_ORIGINAL_MAX_BYTES) cannot be: ValueError, before anything is put back."""
    chosen: list[tuple[str, ArticleFailed]] = []
    if keys is None:
        everything: Any = await client.xrange(DEAD.name)
        chosen = [(e.decode(), ArticleFailed.model_validate_json(_body(f)))
                  for e, f in everything]
    else:
        chosen = [await find_dead(client, key) for key in keys]
    capped = [entry_id for entry_id, failed in chosen if failed.original_capped]
    if capped and keys is not None:
        raise ValueError(f"dead letter {capped[0]} kept only the first bytes of its original "
                         "(NEWSFLOW_DEAD_ORIGINAL_MAX_BYTES): it cannot be retried")
    # Imported here: FastStream is heavy, and `status` does not need it.
    from shared.broker import unpack_original

    retried = 0
    for entry_id, failed in chosen:
        if failed.original_capped:
            continue  # with --all: left in place, as `dead list` shows
        async with client.pipeline(transaction=True) as tx:
            # redis-py types the fields as str-keyed; the bytes kept are sent as they were.
            tx.xadd(failed.stream, unpack_original(failed))  # type: ignore[arg-type]
            tx.xdel(DEAD.name, entry_id)
            await tx.execute()
        retried += 1
    return retried


async def purge_dead(client: Redis) -> int:
    """Forget every dead letter; returns how many there were."""
    count = int(await client.xlen(DEAD.name))
    await client.delete(DEAD.name)
    return count
