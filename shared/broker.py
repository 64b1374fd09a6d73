"""FastStream/Redis wiring every stage shares: groups, reader + reclaimer, retries, dead letters.

Delivery is at-least-once (README, "Delivery"). FastStream 0.7 on Redis Streams does not do that
by itself (nack/reject send nothing, a pending entry is never read again, groups start at `$`),
so this module does what it leaves out:

- every group is created at `0` before the broker starts, so nothing published earlier is missed;
- each stage has a reader (XREADGROUP, bounded COUNT) and a reclaimer (XAUTOCLAIM after an idle
  time) on the same handler: an entry a replica failed on, or held when it died, comes back;
- `DeliveryPolicy` owns acknowledgement: success is XACKed; a permanent failure, or a transient
  one that used up `max_deliveries` attempts, goes to `articles:dead` with its reason and is
  XACKed in the same MULTI; a transient failure below the budget stays pending and is retried
  with exponential backoff (the reclaimer skips it until its time has come);
- on shutdown a replica releases what it still holds, so others take it over at once;
- a janitor (shared/janitor.py) forgets gone consumers and trims what every group has finished.
"""

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from faststream import AckPolicy
from faststream._internal.context.repository import ContextRepo
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.middlewares import BaseMiddleware
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser.binary import BinaryMessageFormatV1
from faststream.redis.parser.message import MessageFormat
from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import make_asgi_app
from pydantic import BaseModel, ValidationError
from redis.exceptions import ResponseError

from shared import keys, metrics
from shared.errors import NewsflowError, PermanentError
from shared.janitor import run_janitor
from shared.logging import entry_context
from shared.messages import ArticleFailed, article_id
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, STAGES, Stream

logger = logging.getLogger("newsflow.delivery")
# FastStream's broker logs its task bookkeeping at INFO; keep its warnings and errors only.
broker_logger = logging.getLogger("newsflow.broker")
broker_logger.setLevel(logging.WARNING)

F = TypeVar("F", bound=Callable[..., Any])


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
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid message: {problems}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DeliveryPolicy:
    """The middleware factory FastStream calls per message (see the module docstring)."""

    def __init__(
        self, client: aioredis.Redis, settings: Settings, service: str, consumer: str
    ) -> None:
        self.client = client
        self.settings = settings
        self.service = service
        self.consumer = consumer
        self.groups = {s.name: s.group for s in STAGES if s.group}

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> "_Delivery":
        return _Delivery(msg, context=context, policy=self)

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

    async def ack(self, stream: str, group: str, entry_id: bytes, *, had_record: bool) -> None:
        if not had_record:
            await self.client.xack(stream, group, entry_id)
            return
        async with self.client.pipeline(transaction=True) as tx:
            tx.xack(stream, group, entry_id)
            tx.hdel(keys.RETRIES_PREFIX + stream, entry_id)
            await tx.execute()

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
            error=type(exc).__name__,
            permanent=permanent,
            deliveries=deliveries,
            original={k.decode(errors="replace"): v.decode(errors="replace")
                      for k, v in fields.items()},
        )
        async with self.client.pipeline(transaction=True) as tx:
            tx.xadd(DEAD.name, {DATA_FIELD: failed.model_dump_json()})
            tx.xack(stream, group, entry_id)
            tx.hdel(keys.RETRIES_PREFIX + stream, entry_id)
            await tx.execute()
        return failed

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


class GaveUp(PermanentError):
    """An entry came back more often than the delivery budget allows (its consumers kept dying)."""


class _NotDue(Exception):
    """A reclaimed entry whose backoff has not run out yet: it stays pending, untouched."""


class _Delivery(BaseMiddleware):
    """Acknowledges, retries or dead-letters one entry, whatever happened to it."""

    def __init__(self, msg: Any, /, *, context: ContextRepo, policy: DeliveryPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy
        self.failures = 0
        """Attempts that failed before this one (from the retry record)."""
        self.had_record = False

    def _entry(self) -> tuple[str, str, bytes, dict[bytes, bytes]] | None:
        raw = self.msg
        if not isinstance(raw, dict) or raw.get("type") != "stream":
            return None
        stream = raw["channel"]
        group = self.policy.groups.get(stream)
        if group is None:
            return None
        return stream, group, raw["message_ids"][0], raw["data"]

    async def consume_scope(self, call_next: Callable[[Any], Any], msg: Any) -> Any:
        entry = self._entry()
        if entry is None:
            if isinstance(self.msg, dict) and self.msg.get("type") == "bstream":
                return await self._consume_batch(call_next, msg)
            return await call_next(msg)
        subscriber = self.context.get("handler_")
        # Only the reclaimer sees entries delivered before.
        if getattr(subscriber, "min_idle_time", None) is not None:
            await self._check_reclaimed(*entry[:3])
        # What every log line about this entry carries (JSON logs show it).
        token = entry_context.set({
            "stage": self.policy.service, "entry_id": entry[2].decode(),
            "article_id": peek(entry[3]).get("id"), "started": time.perf_counter(),
        })
        try:
            with metrics.PROCESSING.labels(self.policy.service).time():
                return await call_next(msg)
        finally:
            entry_context.reset(token)

    async def _consume_batch(self, call_next: Callable[[Any], Any], msg: Any) -> Any:
        raw: dict[str, Any] = self.msg or {}
        # Log lines name their article; this maps it to its entry.
        entries = {peek(fields).get("id"): entry_id.decode()
                   for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=False)}
        token = entry_context.set({"stage": self.policy.service, "entries": entries,
                                   "started": time.perf_counter()})
        try:
            with metrics.PROCESSING.labels(self.policy.service).time():
                return await call_next(msg)
        finally:
            entry_context.reset(token)

    async def _check_reclaimed(self, stream: str, group: str, entry_id: bytes) -> None:
        policy = self.policy
        record = await policy.retry_record(stream, entry_id)
        if record is None:
            # Never failed cleanly, yet delivered again and again: its consumers died or
            # stalled on it (a poison message). Stop before it takes more replicas down.
            tries = await policy.deliveries(stream, group, entry_id)
            if tries > policy.settings.max_deliveries:
                raise GaveUp(
                    f"gave up after {tries - 1} deliveries that never finished "
                    "(the consumer died or stalled)"
                )
            return
        self.had_record = True
        self.failures, not_before = record
        if time.time() < not_before:
            raise _NotDue

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool:
        if isinstance(self.msg, dict) and self.msg.get("type") == "bstream":
            return await self._batch_done(exc_val)
        entry = self._entry()
        if entry is None:
            return False
        stream, group, entry_id, fields = entry
        if exc_val is None:
            await self.policy.ack(stream, group, entry_id, had_record=self.had_record)
            metrics.ENTRIES.labels(self.policy.service, "processed").inc()
            return False
        if isinstance(exc_val, _NotDue):
            return True
        if not isinstance(exc_val, Exception):
            # Cancellation on shutdown: leave it pending; it is released to the other replicas.
            return False
        return await self._failed(stream, group, entry_id, fields, exc_val)

    async def _batch_done(self, exc: BaseException | None) -> bool:
        """A batch is acknowledged whole. If it failed, every entry stays pending and the
        single-entry reclaimer retries them one by one, so the policy applies to each (one bad
        entry cannot sink the others)."""
        policy = self.policy
        raw: dict[str, Any] = self.msg or {}
        stream = raw["channel"]
        group = policy.groups.get(stream)
        ids = raw["message_ids"]
        if group is None or not ids:
            return False
        if exc is None:
            await policy.client.xack(stream, group, *ids)
            metrics.ENTRIES.labels(policy.service, "processed").inc(len(ids))
            return False
        if isinstance(exc, Exception):
            logger.warning("batch of %d at %s failed: %s; retrying its entries one by one",
                           len(ids), policy.service, describe(exc),
                           exc_info=None if isinstance(exc, NewsflowError | ValidationError)
                           else exc)
            return True
        return False

    async def _failed(
        self, stream: str, group: str, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception
    ) -> bool:
        policy = self.policy
        known = peek(fields)
        key = known.get("id") or known.get("url") or entry_id.decode()
        permanent = isinstance(exc, PermanentError | ValidationError)
        attempts = self.failures + 1
        # A bug shows its traceback once; expected failures are one line.
        exc_info = None if isinstance(exc, NewsflowError | ValidationError) else exc
        extra = {"article_id": known.get("id"), "entry_id": entry_id.decode(),
                 "stage": policy.service}
        try:
            if permanent or attempts >= policy.settings.max_deliveries:
                failed = await policy.dead_letter(
                    stream, group, entry_id, fields, exc, permanent=permanent, deliveries=attempts
                )
                metrics.ENTRIES.labels(policy.service, "dead").inc()
                logger.error(
                    "dead %s at %s: %s (%d %s)", key, policy.service, failed.reason, attempts,
                    "attempt" if attempts == 1 else "attempts", exc_info=exc_info,
                    extra=extra | {"outcome": "dead"},
                )
            else:
                delay = policy.backoff_s(attempts)
                await policy.record_failure(stream, entry_id, attempts, delay)
                metrics.ENTRIES.labels(policy.service, "retried").inc()
                logger.warning(
                    "retry %s at %s: %s (attempt %d of %d, again in ~%.0f s)", key,
                    policy.service, describe(exc), attempts, policy.settings.max_deliveries,
                    max(delay, policy.settings.claim_idle_ms / 1000), exc_info=exc_info,
                    extra=extra | {"outcome": "retry"},
                )
        except Exception:
            # Redis itself is gone: the entry stays pending and is reclaimed once it is back.
            logger.exception("could not record the failure of %s at %s", key, policy.service)
        return True


class Stage:
    """One service's FastStream app: broker, delivery policy, and the groups it needs."""

    def __init__(self, service: str, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.consumer = consumer_name()
        self.redis: aioredis.Redis = aioredis.from_url(settings.redis_url)
        self.policy = DeliveryPolicy(self.redis, settings, service, self.consumer)
        self.streams: list[Stream] = []
        self.broker = RedisBroker(
            settings.redis_url,
            middlewares=[RedisPrometheusMiddleware(registry=metrics.REGISTRY), self.policy],
            message_format=PlainJsonFormat,
            graceful_timeout=settings.graceful_timeout_s,
            logger=broker_logger,
            # FastStream's own per-message lines; ours say more, once.
            log_level=logging.DEBUG,
        )
        # Served over HTTP by `newsflow run`: /health (Redis answers) and /metrics (Prometheus).
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=[
                ("/health", make_ping_asgi(self.broker, timeout=5.0)),
                ("/metrics", make_asgi_app(metrics.REGISTRY)),
            ],
            logger=logging.getLogger("newsflow.app"),
        )
        self.app.on_startup(self._create_groups)
        self.app.after_startup(self._start_background)
        self.app.after_shutdown(self._close)
        self._background: list[asyncio.Task[None]] = []

    async def _create_groups(self) -> None:
        await ensure_groups(self.redis)

    async def _start_background(self) -> None:
        self._background = [
            asyncio.create_task(run_janitor(self.redis, self.settings, self.consumer)),
            asyncio.create_task(metrics.run_sampler(self.redis)),
        ]

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The stage started (groups, broker, background tasks) for the life of the block,
        without its HTTP server: for tests and embedding."""
        return self.app.start_lifespan_context()

    async def _close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            released = await self.policy.release(self.streams)
            if released:
                logger.info("released %d unfinished entries to the other replicas", released)
        except Exception:
            # Redis is gone: what we held is reclaimed after the idle time instead.
            logger.warning("could not release unfinished entries", exc_info=True)
        await self.redis.aclose()

    def _subscription(self, stream: Stream, **options: Any) -> StreamSub:
        if stream.group is None:
            raise ValueError(f"{stream.name} is read by no group")
        if stream not in self.streams:
            self.streams.append(stream)
        return StreamSub(stream.name, group=stream.group, consumer=self.consumer,
                         polling_interval=self.settings.poll_ms, **options)

    def reader(self, stream: Stream, *, max_workers: int = 1) -> Callable[[F], F]:
        """Subscribe a handler to the new entries of `stream` (XREADGROUP), `max_workers` at
        once. It reads no more than it works on: a larger COUNT lets one replica hoard a
        backlog that idle replicas could take, and strands more on a crash."""
        sub = self._subscription(stream, max_records=max_workers)
        workers: dict[str, Any] = {"max_workers": max_workers} if max_workers > 1 else {}
        # FastStream wraps the handler; typed as handing it back, so it keeps its signature.
        return cast("Callable[[F], F]", self.broker.subscriber(
            stream=sub, ack_policy=AckPolicy.MANUAL, **workers,
            title=f"{stream.name}:{stream.group}",
            description=f"New entries of {stream.name}, read by the consumer group "
            f"{stream.group!r} (XREADGROUP).",
        ))

    def reclaimer(self, stream: Stream, *, max_workers: int = 1) -> Callable[[F], F]:
        """Subscribe a handler to the entries of `stream` left pending longer than
        `claim_idle_ms` (XAUTOCLAIM): retries, and the work of replicas that died."""
        sub = self._subscription(stream, max_records=max_workers,
                                 min_idle_time=self.settings.claim_idle_ms)
        workers: dict[str, Any] = {"max_workers": max_workers} if max_workers > 1 else {}
        # FastStream wraps the handler; typed as handing it back, so it keeps its signature.
        return cast("Callable[[F], F]", self.broker.subscriber(
            stream=sub, ack_policy=AckPolicy.MANUAL, **workers,
            title=f"{stream.name}:{stream.group}:reclaimer",
            description=f"Entries of {stream.name} left pending longer than "
            "NEWSFLOW_CLAIM_IDLE_MS (XAUTOCLAIM): retries, and work of replicas that died.",
        ))

    def consume(self, stream: Stream, *, max_workers: int = 1) -> Callable[[F], F]:
        """Both: the handler takes new entries and reclaimed ones."""
        read, reclaim = self.reader(stream, max_workers=max_workers), self.reclaimer(
            stream, max_workers=max_workers)

        def decorate(handler: F) -> F:
            return read(reclaim(handler))

        return decorate

    def batch_reader(self, stream: Stream, *, max_records: int) -> Callable[[F], F]:
        """Subscribe a handler to new entries of `stream` in batches of up to `max_records`
        (one XREADGROUP, one XACK for all), where per-entry messaging would cost more than the
        work. Pair it with `reclaimer` on a single-entry handler: a failed batch is retried
        entry by entry there."""
        sub = self._subscription(stream, max_records=max_records, batch=True)
        # FastStream wraps the handler; typed as handing it back, so it keeps its signature.
        return cast("Callable[[F], F]", self.broker.subscriber(
            stream=sub, ack_policy=AckPolicy.MANUAL,
            title=f"{stream.name}:{stream.group}:batch",
            description=f"New entries of {stream.name}, in batches of up to {max_records}.",
        ))

    async def publish_many(self, stream: Stream, events: Sequence[BaseModel]) -> None:
        """Add events to `stream` in one round trip (what a batch handler emits)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(stream.name, {DATA_FIELD: event.model_dump_json()})
            await pipe.execute()

    def publishes(self, stream: Stream) -> Callable[[F], F]:
        """The handler's return value goes to `stream`."""
        # FastStream wraps the handler; typed as handing it back, so it keeps its signature.
        return cast("Callable[[F], F]", self.broker.publisher(stream=stream.name))

