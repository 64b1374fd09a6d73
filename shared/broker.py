"""FastStream/Redis wiring every stage shares: groups, reader + reclaimer, retries, dead letters.

Delivery is at-least-once (README, "Delivery"). FastStream 0.7 on Redis Streams does not do that
by itself (nack/reject send nothing, a pending entry is never read again, groups start at `$`),
so this module does what it leaves out:

- every group is created at `0` before the broker starts, so nothing published earlier is missed;
- each stage has a reader (XREADGROUP, bounded COUNT) and a reclaimer (XAUTOCLAIM after an idle
  time) on the same handler: an entry a replica failed on, or held when it died, comes back;
- `DeliveryPolicy` owns acknowledgement: success is XACKed; a permanent failure, or a transient
  one that used up `max_deliveries`, goes to `articles:dead` with its reason and is XACKed in the
  same MULTI; a transient failure below the budget stays pending and is retried after the idle time.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis
from faststream import AckPolicy, FastStream
from faststream._internal.context.repository import ContextRepo
from faststream.middlewares import BaseMiddleware
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.parser.binary import BinaryMessageFormatV1
from faststream.redis.parser.message import MessageFormat
from pydantic import ValidationError
from redis.exceptions import ResponseError

from shared.errors import NewsflowError, PermanentError
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
            await tx.execute()
        return failed


class GaveUp(PermanentError):
    """An entry came back more often than the delivery budget allows (its consumers kept dying)."""


class _Delivery(BaseMiddleware):
    """Acknowledges, retries or dead-letters one entry, whatever happened to it."""

    def __init__(self, msg: Any, /, *, context: ContextRepo, policy: DeliveryPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

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
        subscriber = self.context.get("handler_")
        # Only the reclaimer sees entries delivered before: one that outlived the delivery budget
        # without ever failing cleanly killed or stalled its consumers, so stop trying it.
        if entry and getattr(subscriber, "min_idle_time", None) is not None:
            stream, group, entry_id, _ = entry
            tries = await self.policy.deliveries(stream, group, entry_id)
            if tries > self.policy.settings.max_deliveries:
                raise GaveUp(
                    f"gave up after {tries - 1} deliveries that never finished "
                    "(the consumer died or stalled)"
                )
        return await call_next(msg)

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool:
        entry = self._entry()
        if entry is None:
            return False
        stream, group, entry_id, fields = entry
        if exc_val is None:
            await self.policy.client.xack(stream, group, entry_id)
            return False
        if not isinstance(exc_val, Exception):
            # Cancellation on shutdown: leave it pending; another replica reclaims it.
            return False
        return await self._failed(stream, group, entry_id, fields, exc_val)

    async def _failed(
        self, stream: str, group: str, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception
    ) -> bool:
        policy = self.policy
        known = peek(fields)
        key = known.get("id") or known.get("url") or entry_id.decode()
        permanent = isinstance(exc, PermanentError | ValidationError)
        # A bug shows its traceback once; expected failures are one line.
        exc_info = None if isinstance(exc, NewsflowError | ValidationError) else exc
        try:
            tries = await policy.deliveries(stream, group, entry_id)
            if permanent or tries >= policy.settings.max_deliveries:
                failed = await policy.dead_letter(
                    stream, group, entry_id, fields, exc, permanent=permanent, deliveries=tries
                )
                logger.error(
                    "dead %s at %s: %s (%d %s)", key, policy.service, failed.reason, tries,
                    "delivery" if tries == 1 else "deliveries", exc_info=exc_info,
                    extra={"article_id": known.get("id"), "entry_id": entry_id.decode(),
                           "stage": policy.service, "outcome": "dead"},
                )
            else:
                logger.warning(
                    "retry %s at %s: %s (delivery %d of %d, again in %.0f s)", key,
                    policy.service, describe(exc), tries, policy.settings.max_deliveries,
                    policy.settings.claim_idle_ms / 1000, exc_info=exc_info,
                    extra={"article_id": known.get("id"), "entry_id": entry_id.decode(),
                           "stage": policy.service, "outcome": "retry"},
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
        self.broker = RedisBroker(
            settings.redis_url,
            middlewares=[DeliveryPolicy(self.redis, settings, service, self.consumer)],
            message_format=PlainJsonFormat,
            graceful_timeout=settings.graceful_timeout_s,
            logger=broker_logger,
            # FastStream's own per-message lines; ours say more, once.
            log_level=logging.DEBUG,
        )
        self.app = FastStream(self.broker, logger=logging.getLogger("newsflow.app"))
        self.app.on_startup(self._create_groups)
        self.app.after_shutdown(self._close)

    async def _create_groups(self) -> None:
        await ensure_groups(self.redis)

    async def _close(self) -> None:
        await self.redis.aclose()

    def consume(self, stream: Stream, *, max_workers: int = 1) -> Callable[[F], F]:
        """Subscribe a handler to `stream` twice: new entries (reader) and entries left pending
        longer than `claim_idle_ms` by a failure or a dead replica (reclaimer). `max_workers`
        entries are handled at once (and no more are read ahead)."""
        if stream.group is None:
            raise ValueError(f"{stream.name} is read by no group")
        settings = self.settings
        common: dict[str, Any] = {
            "group": stream.group,
            "consumer": self.consumer,
            # Read only what this replica works on at once: a larger COUNT lets one replica
            # hoard a backlog that idle replicas could take, and strands more on a crash.
            "max_records": max_workers,
            "polling_interval": settings.poll_ms,
        }
        reader = StreamSub(stream.name, **common)
        reclaimer = StreamSub(stream.name, min_idle_time=settings.claim_idle_ms, **common)
        workers: dict[str, Any] = {"max_workers": max_workers} if max_workers > 1 else {}

        def decorate(handler: F) -> F:
            handler = self.broker.subscriber(
                stream=reclaimer, ack_policy=AckPolicy.MANUAL, **workers
            )(handler)
            return self.broker.subscriber(  # type: ignore[no-any-return]  # FastStream's wrapper
                stream=reader, ack_policy=AckPolicy.MANUAL, **workers
            )(handler)

        return decorate

    def publishes(self, stream: Stream) -> Callable[[F], F]:
        """The handler's return value goes to `stream`."""
        return self.broker.publisher(stream=stream.name)  # type: ignore[return-value]  # FastStream's wrapper

    async def run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.app.run()
