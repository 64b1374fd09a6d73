"""FastStream/Redis wiring every stage shares: groups, reader + reclaimer, retries, dead letters.

Delivery is at-least-once (README, "Delivery"). FastStream 0.7 on Redis Streams does not do that
by itself (nack/reject send nothing, a pending entry is never read again, groups start at `$`),
so this module does what it leaves out:

- every group is created at `0` before the broker starts, so nothing published earlier is missed;
- each handler has a reader (XREADGROUP, NEWSFLOW_READ_AHEAD entries a read) and a reclaimer
  (XAUTOCLAIM after an idle time): an entry a replica failed on, or held when it died, comes back;
- `DeliveryPolicy` settles each entry: on success its output is added and the entry XACKed in
  one MULTI (one round trip); a permanent failure, or a transient one that used up
  `max_deliveries` attempts, goes to `articles:dead` with its reason and is XACKed in the same
  MULTI; a transient failure below the budget stays pending and is retried with exponential
  backoff (the reclaimer skips it until its time has come);
- on shutdown a replica lets its work in hand finish, then releases what it still holds, so
  others take it over at once;
- a janitor (shared/janitor.py) forgets gone consumers and trims what every group has finished.

FastStream's per-message path (decode, validate, middlewares, publish) cost about as much CPU as
a cheap stage's work; reading several entries at once and settling each in one round trip cuts
the messaging cost of a hop by more than half (docs/performance.md).
"""

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser.binary import BinaryMessageFormatV1
from faststream.redis.parser.message import MessageFormat
from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import make_asgi_app
from pydantic import BaseModel, SkipValidation, ValidationError
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys, metrics, replicas
from shared.errors import NewsflowError, PermanentError, UnreadableEntry, is_permanent
from shared.janitor import run_janitor
from shared.logging import entry_context
from shared.messages import ArticleFailed, article_id
from shared.reach import when_reachable, where
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, STAGES, Stream

logger = logging.getLogger("newsflow.delivery")
# FastStream's broker logs its task bookkeeping at INFO; keep its warnings and errors only.
broker_logger = logging.getLogger("newsflow.broker")
broker_logger.setLevel(logging.WARNING)


class _ReadsCutAtShutdown(logging.Filter):
    """While a stage stops, a blocking read can find its connection closed under it (its
    cancellation can be lost inside redis-py's timeout handling) and FastStream logs a fetch
    error: expected then, so not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Message fetch error"


class _GroupGoneIsRecovered(logging.Filter):
    """FastStream stops a reader whose consumer group vanished and logs CRITICAL "restart the
    application"; Stage recreates the group and restarts the reader itself (and says so)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "no longer exists" not in record.getMessage()


broker_logger.addFilter(_GroupGoneIsRecovered())


def connection_options(settings: Settings) -> dict[str, Any]:
    """How every pooled connection to Redis behaves (the stage's client and FastStream's).

    redis-py's default for a client made from a URL is no retry at all: a command caught by a
    Redis restart failed, and its article was retried a minute later. So a command that meets a
    lost connection or a timeout is sent again on a fresh connection, backing off for about
    10 s in all — longer than Redis takes to restart. A connection left half-open (the server
    vanished without closing it, as a container on another host does) would hang a command for
    minutes: idle connections are checked before use, and no reply may take longer than the
    longest blocking read plus 10 s. (A transaction sent again may repeat its output: harmless,
    as every step is idempotent by article id.)"""
    return {
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=10),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 15,
        "socket_keepalive": True,
        "socket_connect_timeout": 5.0,
        "socket_timeout": settings.poll_ms / 1000 + 10.0,
    }


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client whose pooled connections survive a Redis restart (connection_options)."""
    client: aioredis.Redis = aioredis.from_url(settings.redis_url,
                                               **connection_options(settings))
    return client


async def check_persistence(client: aioredis.Redis) -> bool | None:
    """Whether Redis keeps an append-only file (None when it will not say: CONFIG disabled or
    renamed, as on managed services); warns loudly when it does not."""
    try:
        config: Any = await client.config_get("appendonly")
    except ResponseError:
        logger.warning("cannot check that Redis keeps an append-only file (CONFIG refused): "
                       "without one, a restart loses every article in flight (README, "
                       "\"Redis versions and persistence\")")
        return None
    value = config.get("appendonly", config.get(b"appendonly"))
    if (value.decode() if isinstance(value, bytes) else value) == "yes":
        return True
    logger.critical("Redis keeps NO append-only file (appendonly no): a restart loses every "
                    "article submitted and not yet indexed, and every retry and dead letter, "
                    "without a trace. Set `appendonly yes` (README, \"Redis versions and "
                    "persistence\")")
    return False


def consumer_name() -> str:
    """A name unique to this replica: its consumer in the group (and what `status` lists)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class PlainJsonFormat(MessageFormat):
    """Messages as plain JSON in `__data__`, so any Redis client can read and write every stream.

    FastStream's default is a binary envelope; its entries are still read, for compatibility."""

    @classmethod
    async def encode(cls, **kwargs: Any) -> bytes:
        return (await cls.build(**kwargs)).data

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        if data.startswith(BinaryMessageFormatV1.IDENTITY_HEADER):
            return BinaryMessageFormatV1.parse(data)
        return data, {}


async def ensure_groups(client: aioredis.Redis, streams: Sequence[Stream] = STAGES) -> None:
    """Create each stream's consumer group at `0` (FastStream would start it at `$` and skip
    everything published before the first replica came up)."""
    for stream in streams:
        if stream.group is None:
            continue
        try:
            await client.xgroup_create(stream.name, stream.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def peek(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The article id and URL of a raw entry, as far as they can be read (logs, dead letters)."""
    raw = fields.get(DATA_FIELD.encode())
    if raw is None:
        return {}
    try:
        body, _ = PlainJsonFormat.parse(raw)
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    known = {k: data[k] for k in ("id", "url") if isinstance(data.get(k), str) and data[k]}
    if "id" not in known and "url" in known:
        # What ArticleSubmitted would derive, so a publisher waiting on the id sees the failure.
        known["id"] = article_id(known["url"])
    return known


def describe(exc: BaseException) -> str:
    """A one-line reason for a failure, fit for a log line and a dead letter."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        return f"invalid message: {problems}"
    if isinstance(exc, UnreadableEntry):
        return str(exc)  # already the reason, from its cause
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


ORIGINAL_PLAIN_MAX_BYTES = 4096
"""A dead letter keeps an original up to this size as it was (readable with redis-cli);
a larger one is compressed."""


def pack_original(fields: dict[bytes, bytes], cap: int) -> dict[str, Any]:
    """What a dead letter keeps of its entry, as ArticleFailed's `original*` fields: a small
    entry as it was; a large one compressed (zlib, base64: a page is mostly text), and cut to
    `cap` bytes first when it is larger still — a 30 MB page must not hold 30 MB of Redis
    memory for as long as its letter lives."""
    size = sum(len(value) for value in fields.values())
    if size <= min(cap, ORIGINAL_PLAIN_MAX_BYTES):
        return {"original": {k.decode(errors="replace"): v.decode(errors="replace")
                             for k, v in fields.items()}}
    room, original = cap, {}
    for key, value in fields.items():
        kept = value[:max(room, 0)]
        room -= len(kept)
        original[key.decode(errors="replace")] = base64.b64encode(zlib.compress(kept)).decode()
    return {"original": original, "original_compressed": True, "original_bytes": size,
            "original_capped": size > cap}


def unpack_original(failed: ArticleFailed) -> dict[bytes, bytes]:
    """The original entry a dead letter kept (cut, when `original_capped` says so)."""
    if not failed.original_compressed:
        return {k.encode(): v.encode() for k, v in failed.original.items()}
    return {k.encode(): zlib.decompress(base64.b64decode(v)) for k, v in failed.original.items()}


@dataclass(frozen=True)
class Entry:
    """One stream entry as read: its stream, its id and its raw fields."""

    stream: Stream
    id: bytes
    fields: dict[bytes, bytes]

    @property
    def group(self) -> str:
        return self.stream.group or ""

    def event(self) -> BaseModel:
        """The entry's event, validated. Whatever fails in decoding it (pydantic's
        ValidationError, or an error a validator let escape) raises UnreadableEntry: the
        entry can never be read, however often it is tried."""
        raw = self.fields.get(_DATA_KEY)
        if raw is None:
            raise UnreadableEntry(f"invalid message: no {DATA_FIELD} field")
        try:
            body, _ = PlainJsonFormat.parse(raw)
            return self.stream.event.model_validate_json(body)
        except Exception as exc:
            raise UnreadableEntry(describe(exc)) from exc


_DATA_KEY = DATA_FIELD.encode()


@dataclass(frozen=True)
class Emit:
    """An event a handler hands on, to a stream of its choosing."""

    stream: Stream
    event: BaseModel
    also: Callable[[Pipeline], object] | None = None
    """More writes to commit with it (in the same MULTI as the event and the acknowledgement)."""


Result = BaseModel | Emit | None
"""What a handler returns: an event for its one output stream, an Emit, or None (nothing)."""

H = TypeVar("H", bound=Callable[[Any], Awaitable[Result]])
B = TypeVar("B", bound=Callable[[Any], Awaitable[Sequence[BaseModel]]])


class GaveUp(PermanentError):
    """An entry came back more often than the delivery budget allows (its consumers kept dying)."""


class _NotDue(Exception):
    """A reclaimed entry whose backoff has not run out yet: it stays pending, untouched."""


class DeliveryPolicy:
    """What happens to an entry once a handler is done with it (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis, settings: Settings, service: str, consumer: str
    ) -> None:
        self.client = client
        self.settings = settings
        self.service = service
        self.consumer = consumer

    async def deliveries(self, stream: str, group: str, entry_id: bytes) -> int:
        """How many times the entry was delivered (1 when it is no longer pending)."""
        pending: Any = await self.client.xpending_range(stream, group, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    def backoff_s(self, attempts: int) -> float:
        """How long after its `attempts`-th failure an entry is tried again: the claim idle
        time, doubled at each failure, with jitter so that a burst of failures spreads out."""
        base = self.settings.claim_idle_ms / 1000 * 2.0 ** (attempts - 1)
        return base * random.uniform(0.8, 1.2)  # noqa: S311 -- jitter, not security

    async def retry_record(self, stream: str, entry_id: bytes) -> tuple[int, float] | None:
        """(failed attempts, when the next may start) for an entry that failed before."""
        raw: Any = await self.client.hget(keys.RETRIES_PREFIX + stream, entry_id)
        if raw is None:
            return None
        attempts, _, not_before = raw.decode().partition(":")
        return int(attempts), float(not_before)

    async def record_failure(
        self, stream: str, entry_id: bytes, attempts: int, delay_s: float
    ) -> None:
        record = f"{attempts}:{time.time() + delay_s}"
        await self.client.hset(keys.RETRIES_PREFIX + stream, entry_id, record)

    async def failures_before(self, entry: Entry) -> int:
        """For a reclaimed entry: the attempts that failed before this one. Raises _NotDue while
        its backoff runs, GaveUp when it was delivered too often without ever finishing."""
        record = await self.retry_record(entry.stream.name, entry.id)
        if record is None:
            # Never failed cleanly, yet delivered again and again: its consumers died or
            # stalled on it (a poison message). Stop before it takes more replicas down.
            tries = await self.deliveries(entry.stream.name, entry.group, entry.id)
            if tries > self.settings.max_deliveries:
                raise GaveUp(
                    f"gave up after {tries - 1} deliveries that never finished "
                    "(the consumer died or stalled)"
                )
            return 0
        failures, not_before = record
        if time.time() < not_before:
            raise _NotDue
        return failures

    async def settle(self, done: Sequence[tuple[Entry, Sequence[Emit]]]) -> None:
        """Hand on what the entries produced and acknowledge them, all or nothing: one MULTI,
        one round trip (a crash in between can neither lose the output nor repeat it)."""
        if not done:
            return
        stream = done[0][0].stream
        ids = [entry.id for entry, _ in done]
        async with self.client.pipeline(transaction=True) as tx:
            for _, emits in done:
                for emit in emits:
                    tx.xadd(emit.stream.name, {DATA_FIELD: emit.event.model_dump_json()})
                    if emit.also is not None:
                        emit.also(tx)
            tx.xack(stream.name, stream.group or "", *ids)
            tx.hdel(keys.RETRIES_PREFIX + stream.name, *ids)
            await tx.execute()
        metrics.ENTRIES.labels(self.service, "processed").inc(len(ids))

    async def dead_letter(
        self, stream: str, group: str, entry_id: bytes, fields: dict[bytes, bytes],
        exc: BaseException, *, permanent: bool, deliveries: int,
    ) -> ArticleFailed:
        """Move the entry to the dead letters and acknowledge it, both or neither (MULTI)."""
        known = peek(fields)
        failed = ArticleFailed(
            id=known.get("id"),
            url=known.get("url"),
            stream=stream,
            entry_id=entry_id.decode(),
            group=group,
            consumer=self.consumer,
            reason=describe(exc),
            # An unreadable entry names what made it so.
            error=type(exc.__cause__ if isinstance(exc, UnreadableEntry) and exc.__cause__
                       else exc).__name__,
            permanent=permanent,
            deliveries=deliveries,
            **pack_original(fields, self.settings.dead_original_max_bytes),
        )
        async with self.client.pipeline(transaction=True) as tx:
            tx.xadd(DEAD.name, {DATA_FIELD: failed.model_dump_json()})
            tx.xack(stream, group, entry_id)
            tx.hdel(keys.RETRIES_PREFIX + stream, entry_id)
            await tx.execute()
        return failed

    async def fail(self, entry: Entry, exc: Exception, failures: int) -> None:
        """An attempt at the entry failed: dead-letter it when the failure is permanent or the
        budget is spent, else leave it pending and record when to try again."""
        known = peek(entry.fields)
        key = known.get("id") or known.get("url") or entry.id.decode()
        permanent = is_permanent(exc)
        attempts = failures + 1
        # A bug shows its traceback once; expected failures, and input that can never work,
        # are one line (the reason names the error).
        exc_info = None if permanent or isinstance(exc, NewsflowError) else exc
        extra = {"article_id": known.get("id"), "entry_id": entry.id.decode(),
                 "stage": self.service}
        try:
            if permanent or attempts >= self.settings.max_deliveries:
                failed = await self.dead_letter(
                    entry.stream.name, entry.group, entry.id, entry.fields, exc,
                    permanent=permanent, deliveries=attempts,
                )
                metrics.ENTRIES.labels(self.service, "dead").inc()
                logger.error(
                    "dead %s at %s: %s (%d %s)", key, self.service, failed.reason, attempts,
                    "attempt" if attempts == 1 else "attempts", exc_info=exc_info,
                    extra=extra | {"outcome": "dead"},
                )
            else:
                delay = self.backoff_s(attempts)
                await self.record_failure(entry.stream.name, entry.id, attempts, delay)
                metrics.ENTRIES.labels(self.service, "retried").inc()
                logger.warning(
                    "retry %s at %s: %s (attempt %d of %d, again in ~%.0f s)", key,
                    self.service, describe(exc), attempts, self.settings.max_deliveries,
                    max(delay, self.settings.claim_idle_ms / 1000), exc_info=exc_info,
                    extra=extra | {"outcome": "retry"},
                )
        except Exception:
            # Redis itself is gone: the entry stays pending and is reclaimed once it is back.
            logger.exception("could not record the failure of %s at %s", key, self.service)

    async def release(self, streams: Sequence[Stream]) -> int:
        """Hand back what this replica still holds (on shutdown): its pending entries are marked
        idle long enough that the other replicas' reclaimers take them at once."""
        released = 0
        for stream in streams:
            if stream.group is None:
                continue
            held: Any = await self.client.xpending_range(
                stream.name, stream.group, "-", "+", 10_000, consumername=self.consumer
            )
            ids = [entry["message_id"] for entry in held]
            if ids:
                # JUSTID leaves the delivery count as it is.
                await self.client.xclaim(
                    stream.name, stream.group, self.consumer, 0, ids,
                    idle=self.settings.claim_idle_ms, justid=True,
                )
                released += len(ids)
        return released


# Renew this consumer's lease on entries it still owns (XCLAIM JUSTID to itself resets their idle
# time and leaves the delivery count alone); never takes back one another consumer now owns. One
# script, so no reclaimer can slip between the check and the claim. Returns the ids another
# consumer owns (this one lost them) — an id pending to nobody (acknowledged, or Redis lost it)
# is in neither list.
_RENEW = """
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #mine == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
  elseif #redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1) == 1 then
    table.insert(lost, id)
  end
end
return lost
"""


class Leases:
    """The entries this replica holds — read and not yet settled, in work or waiting for a free
    slot — and their lease: renewed every third of NEWSFLOW_CLAIM_IDLE_MS, so no reclaimer
    hands an entry to another replica while this one is alive and on it, however long the
    work or the wait takes. Only a replica that died or hung (its event loop stuck for the
    whole claim window) loses its entries; should it come back, it drops them (a task still
    working on one is cancelled) rather than work on them beside their new owner."""

    def __init__(self, client: aioredis.Redis, consumer: str, claim_idle_ms: int) -> None:
        self.client = client
        self.consumer = consumer
        self.every_s = max(0.05, claim_idle_ms / 3 / 1000)
        self.held: dict[Stream, dict[bytes, asyncio.Task[None] | None]] = {}
        self.lost: set[tuple[str, bytes]] = set()
        self._renew = client.register_script(_RENEW)

    def new(self, entries: list[Entry]) -> list[Entry]:
        """The entries of a read that this replica does not hold already. Its own reclaimer
        can hand back an entry it is still on, if the lease could not be renewed in time (Redis
        was away longer than the claim window): that one is left to the work in hand."""
        return [e for e in entries if e.id not in self.held.get(e.stream, {})]

    def hold(self, entry: Entry) -> None:
        self.held.setdefault(entry.stream, {})[entry.id] = None

    def working(self, entry: Entry, task: asyncio.Task[None]) -> None:
        self.held.setdefault(entry.stream, {})[entry.id] = task

    def drop(self, entry: Entry) -> None:
        self.held.get(entry.stream, {}).pop(entry.id, None)
        self.lost.discard((entry.stream.name, entry.id))

    def is_lost(self, entry: Entry) -> bool:
        return (entry.stream.name, entry.id) in self.lost

    async def renew(self) -> int:
        """Renew every lease held, one round trip per stream; returns how many were lost."""
        lost = 0
        for stream, entries in list(self.held.items()):
            if not entries or stream.group is None:
                continue
            taken: Any = await self._renew(keys=[stream.name],
                                           args=[stream.group, self.consumer, *entries])
            for entry_id in taken:
                task = entries.pop(entry_id, None)
                self.lost.add((stream.name, entry_id))
                lost += 1
                logger.warning("entry %s of %s was taken over by another replica (this one "
                               "stalled past NEWSFLOW_CLAIM_IDLE_MS): dropped here",
                               entry_id.decode(), stream.name)
                if task is not None:
                    task.cancel()
        return lost

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.renew()
            except Exception:
                # Redis is away (or lost its data): nobody can reclaim meanwhile; try again.
                logger.debug("could not renew the leases", exc_info=True)


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has ended (redis-py can swallow a
    cancellation that lands inside a command, so it is cancelled again until it ends)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


async def _as_read(raw: Any) -> StreamMessage[Any]:
    """FastStream parser that leaves the entries as read: FastStream's own would load every
    body, dump them all again as one JSON list, and fail the whole read on one odd entry.
    Stage decodes each entry by itself."""
    return StreamMessage(raw_message=raw, body=b"")


async def _raw(msg: Any) -> Any:
    """FastStream decoder that hands the read to the handler as it came."""
    return msg.raw_message


class Stage:
    """One service's FastStream app: broker, delivery policy, and the groups it needs.

    FastStream reads (XREADGROUP for new entries, XAUTOCLAIM for reclaimed ones, several
    entries a read) and serves metrics and the AsyncAPI document; handing on, acknowledging,
    retrying and dead-lettering each entry is done here, in one round trip per entry."""

    def __init__(self, service: str, settings: Settings, consumer: str | None = None) -> None:
        self.service = service
        self.settings = settings
        self.consumer = consumer or consumer_name()
        self.redis = redis_client(settings)
        self.policy = DeliveryPolicy(self.redis, settings, service, self.consumer)
        self.leases = Leases(self.redis, self.consumer, settings.claim_idle_ms)
        self._renewing: asyncio.Task[None] | None = None
        self.streams: list[Stream] = []
        self.broker = RedisBroker(
            settings.redis_url,
            middlewares=[RedisPrometheusMiddleware(registry=metrics.REGISTRY)],
            message_format=PlainJsonFormat,
            graceful_timeout=settings.graceful_timeout_s,
            **connection_options(settings),
            logger=broker_logger,
            # FastStream's own per-message lines; ours say more, once.
            log_level=logging.DEBUG,
        )
        # Served over HTTP by `newsflow run`: /health (Redis answers and every reader reads)
        # and /metrics (Prometheus).
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=[
                ("/health", self._health_route()),
                ("/metrics", make_asgi_app(metrics.REGISTRY)),
            ],
            logger=logging.getLogger("newsflow.app"),
        )
        self.app.on_startup(self._create_groups)
        self.app.after_startup(self._start_background)
        self.app.on_shutdown(self._stopping)
        self.app.after_shutdown(self._close)
        self._background: list[asyncio.Task[None]] = []
        self._in_work: set[asyncio.Task[None]] = set()
        self._started = asyncio.Event()
        """Set once the broker and every subscriber have started (after_startup)."""
        self._quiet_reads = _ReadsCutAtShutdown()
        self._documented: set[str] = set()

    async def _create_groups(self) -> None:
        await when_reachable(lambda: ensure_groups(self.redis),
                             f"Redis at {where(self.settings.redis_url)}",
                             self.settings.startup_wait_s)
        await check_persistence(self.redis)

    async def _start_background(self) -> None:
        self._started.set()
        self._renewing = asyncio.create_task(self.leases.run())
        self._background = [
            asyncio.create_task(self._keep_reading()),
            asyncio.create_task(run_janitor(self.redis, self.settings, self.consumer)),
            asyncio.create_task(metrics.run_sampler(self.redis)),
            asyncio.create_task(replicas.heartbeat(
                self.redis, self.service, self.consumer,
                f"{self.settings.metrics_host}:{self.settings.metrics_port}")),
        ]

    def stopped_readers(self) -> list[str]:
        """The readers (subscribers) that are not reading: none while the stage is healthy."""
        return [sub.specification.call_name for sub in self.broker.subscribers
                if not sub.running]

    def _health_route(self) -> Any:
        @get(include_in_schema=False)
        async def health(scope: Any) -> AsgiResponse:
            stopped = self.stopped_readers()
            if stopped:
                return AsgiResponse(f"stopped: {', '.join(stopped)}\n".encode(), 503)
            if not await self.broker.ping(5.0):
                return AsgiResponse(b"Redis does not answer\n", 503)
            return AsgiResponse(b"", 204)

        return health

    async def restart_stopped_readers(self) -> int:
        """Recreate the consumer groups and restart every reader FastStream stopped.

        FastStream stops a reader for good when its group is gone (NOGROUP: Redis restarted
        without its data, a failover to an empty replica, a FLUSHALL) and leaves the process
        idling; a group is recreated at `0`, so what is added from then on is read."""
        stopped = [sub for sub in self.broker.subscribers if not sub.running]
        if not stopped or not self._started.is_set():
            return 0
        await ensure_groups(self.redis, self.streams)
        for sub in stopped:
            await sub.start()
        logger.warning("consumer groups of %s were gone (Redis lost its data?): recreated, "
                       "%d readers restarted; entries added before the loss are lost",
                       ", ".join(s.name for s in self.streams), len(stopped))
        return len(stopped)

    async def _keep_reading(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_ms / 1000)
            try:
                await self.restart_stopped_readers()
            except Exception:
                # Redis is away: /health says so meanwhile; try again.
                logger.warning("could not restart the stopped readers", exc_info=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The stage started (groups, broker, background tasks) for the life of the block,
        without its HTTP server: for tests and embedding."""
        async with self.app.start_lifespan_context():
            # FastStream enters the block while its subscribers are still starting; a block
            # that ended that soon would cut their start short.
            await self._started.wait()
            yield

    async def _stopping(self) -> None:
        # From here the readers stop on purpose: not to be restarted.
        self._started.clear()
        broker_logger.addFilter(self._quiet_reads)

    async def _close(self) -> None:
        broker_logger.removeFilter(self._quiet_reads)
        self._started.clear()
        for task in self._background:
            task.cancel()
        # The broker has stopped reading; what is in work may finish within the grace time.
        if self._in_work:
            _, late = await asyncio.wait(self._in_work, timeout=self.settings.graceful_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # Leases are renewed as long as work is in hand, then what is left is released.
        if self._renewing is not None:
            await _cancelled(self._renewing)
        for task in self._background:
            await _cancelled(task)
        try:
            released = await self.policy.release(self.streams)
            if released:
                logger.info("released %d unfinished entries to the other replicas", released)
        except Exception:
            # Redis is gone: what we held is reclaimed after the idle time instead.
            logger.warning("could not release unfinished entries", exc_info=True)
        await self.redis.aclose()

    def handle(
        self, source: Stream, *, to: Stream | Sequence[Stream] = (), concurrency: int = 1
    ) -> Callable[[H], H]:
        """Run the handler on every entry of `source`, `concurrency` at once: new entries and
        reclaimed ones (retries, and the work of replicas that died). What it returns goes to
        `to` with the entry's acknowledgement (an Emit names one of `to` itself)."""
        outputs = self._outputs(to)
        slots = asyncio.Semaphore(concurrency)

        def decorate(handler: H) -> H:
            async def take(entries: list[Entry], reclaimed: bool) -> None:
                # Each entry is worked on in a task of its own, so the next read overlaps the
                # work; the read returns once its last entry has started (bounded read-ahead).
                entries = self.leases.new(entries)
                for entry in entries:
                    self.leases.hold(entry)
                for entry in entries:
                    await slots.acquire()
                    if self.leases.is_lost(entry):
                        # Waited so long that another replica has it now (see Leases).
                        self.leases.drop(entry)
                        slots.release()
                        continue
                    task = asyncio.create_task(self._one(entry, handler, outputs, reclaimed))
                    self.leases.working(entry, task)
                    self._in_work.add(task)
                    task.add_done_callback(self._in_work.discard)
                    task.add_done_callback(lambda _: slots.release())

            read_ahead = max(concurrency, self.settings.read_ahead)
            self._subscribe(source, take, count=read_ahead, reclaim=False)
            self._subscribe(source, take, count=1, reclaim=True)
            return handler

        return decorate

    def handle_batches(
        self, source: Stream, *, to: Stream, max_records: int
    ) -> Callable[[B], B]:
        """Run the handler on new entries of `source` in batches of up to `max_records`, where
        per-entry work would cost less than reading it (the indexer: one transaction). It
        returns one event per entry, for `to`; all are handed on and acknowledged at once. A
        batch that fails is taken again entry by entry, so each gets its own retries."""
        outputs = self._outputs(to)

        def decorate(handler: B) -> B:
            async def one(event: BaseModel) -> Result:
                [result] = await handler([event])
                return result

            async def take(entries: list[Entry], reclaimed: bool) -> None:
                entries = self.leases.new(entries)
                for entry in entries:
                    self.leases.hold(entry)
                try:
                    if reclaimed:
                        for entry in entries:
                            await self._one(entry, one, outputs, reclaimed)
                        return
                    await self._batch(entries, handler, one, outputs)
                finally:
                    for entry in entries:
                        self.leases.drop(entry)

            self._subscribe(source, take, count=max_records, reclaim=False)
            self._subscribe(source, take, count=1, reclaim=True)
            return handler

        return decorate

    def _outputs(self, to: Stream | Sequence[Stream]) -> tuple[Stream, ...]:
        outputs = (to,) if isinstance(to, Stream) else tuple(to)
        for stream in outputs:
            if stream.name not in self._documented:
                # Handing on is done here, not by FastStream: registered for the AsyncAPI doc.
                self._documented.add(stream.name)
                self.broker.publisher(stream=stream.name, schema=stream.event,
                                      title=f"{stream.name}:Publisher")
        return outputs

    def _subscribe(
        self, source: Stream, take: Callable[[list[Entry], bool], Awaitable[None]], *,
        count: int, reclaim: bool,
    ) -> None:
        if source.group is None:
            raise ValueError(f"{source.name} is read by no group")
        if source not in self.streams:
            self.streams.append(source)
        sub = StreamSub(source.name, group=source.group, consumer=self.consumer,
                        polling_interval=self.settings.poll_ms, batch=True, max_records=count,
                        min_idle_time=self.settings.claim_idle_ms if reclaim else None)

        async def read(raw: Any) -> None:
            await take([Entry(source, entry_id, fields) for entry_id, fields
                        in zip(raw["message_ids"], raw["data"], strict=True)], reclaim)

        # The AsyncAPI document shows the event the stream carries; FastStream must not validate
        # it (the read is handed over raw, and each entry is validated by Entry.event).
        read.__annotations__ = {
            # (mypy wants a static type; this one is the stream's, known at run time.)
            "raw": SkipValidation[source.event],  # type: ignore[misc,name-defined]
            "return": None,
        }
        what = ("Entries of {name} left pending longer than NEWSFLOW_CLAIM_IDLE_MS "
                "(XAUTOCLAIM): retries, and work of replicas that died." if reclaim else
                "New entries of {name}, read by the consumer group {group!r} (XREADGROUP).")
        self.broker.subscriber(
            stream=sub, ack_policy=AckPolicy.MANUAL, parser=_as_read, decoder=_raw,
            title=f"{source.name}:{source.group}" + (":reclaimer" if reclaim else ""),
            description=what.format(name=source.name, group=source.group),
        )(read)

    async def _one(
        self, entry: Entry, handler: Callable[[Any], Awaitable[Result]],
        outputs: tuple[Stream, ...], reclaimed: bool,
    ) -> None:
        """Work on one entry and settle it, whatever happens (nothing escapes but cancellation,
        which leaves the entry pending: it is released to the other replicas)."""
        # What every log line about this entry carries (JSON logs show it).
        context: dict[str, Any] = {"stage": self.service, "entry_id": entry.id.decode(),
                                   "article_id": None, "started": time.perf_counter()}
        token = entry_context.set(context)
        failures = 0
        try:
            with metrics.PROCESSING.labels(self.service).time():
                if reclaimed:
                    failures = await self.policy.failures_before(entry)
                event = entry.event()
                context["article_id"] = getattr(event, "id", None)
                result = await handler(event)
                await self.policy.settle([(entry, self._emits(result, outputs))])
        except _NotDue:
            pass
        except Exception as exc:
            await self.policy.fail(entry, exc, failures)
        finally:
            self.leases.drop(entry)
            entry_context.reset(token)

    async def _batch(
        self, entries: list[Entry], handler: Callable[[Any], Awaitable[Sequence[BaseModel]]],
        one: Callable[[Any], Awaitable[Result]], outputs: tuple[Stream, ...],
    ) -> None:
        events: list[BaseModel] = []
        good: list[Entry] = []
        for entry in entries:
            try:
                events.append(entry.event())
                good.append(entry)
            except Exception as exc:
                await self.policy.fail(entry, exc, 0)
        if not good:
            return
        # Log lines name their article; this maps it to its entry.
        token = entry_context.set({
            "stage": self.service, "started": time.perf_counter(),
            "entries": {getattr(e, "id", None): x.id.decode() for e, x in zip(events, good,
                                                                           strict=True)},
        })
        try:
            with metrics.PROCESSING.labels(self.service).time():
                results = await handler(events)
                await self.policy.settle([(entry, self._emits(result, outputs))
                                          for entry, result in zip(good, results, strict=True)])
            return
        except Exception as exc:
            logger.warning("batch of %d at %s failed: %s; taking its entries one by one",
                           len(good), self.service, describe(exc),
                           exc_info=None if isinstance(exc, NewsflowError) or is_permanent(exc)
                           else exc)
        finally:
            entry_context.reset(token)
        for entry in good:
            await self._one(entry, one, outputs, reclaimed=False)

    @staticmethod
    def _emits(result: Result, outputs: tuple[Stream, ...]) -> list[Emit]:
        if result is None:
            return []
        if isinstance(result, Emit):
            if result.stream not in outputs:
                raise TypeError(f"the handler emits to {result.stream.name}, not one of its "
                                "outputs")
            return [result]
        if len(outputs) != 1:
            raise TypeError("a handler with several outputs returns an Emit")
        return [Emit(outputs[0], result)]
