"""Webhook deliveries: the signed JSON (or Slack) body, the POST with retries honouring
Retry-After, and the failure classes the delivery policy turns into retries or dead letters."""

import asyncio
import json
import logging
import random
import time
from typing import Any

import httpx

from shared.errors import PermanentError, TransientError
from shared.messages import WatchMatched
from shared.netguard import Resolver, checked_addresses, resolve_host, retry_after_s
from shared.settings import Settings
from shared.watches import DELIVERY_HEADER, SIGNATURE_HEADER, Watch, sign

logger = logging.getLogger("newsflow.watcher")

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookUnavailable(TransientError):
    """The receiver did not take the delivery (timeout, refused connection, 429, 5xx): later."""


class WebhookRefused(PermanentError):
    """The receiver (or the address guard) refuses the delivery for good (4xx, a redirect, an
    internal address)."""


def make_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_timeout_s),
        headers={"User-Agent": settings.user_agent},
        # A redirect could lead past the address guard: not followed.
        follow_redirects=False,
        # A proxy from the environment would resolve names behind the guard's back.
        trust_env=False,
    )


def payload(event: WatchMatched, watch: Watch) -> dict[str, Any]:
    """The webhook body: the watch, the article, and the idempotency key."""
    if watch.format == "slack":
        day = event.published.date().isoformat() if event.published else "undated"
        link = f"<{event.url}|{event.title or event.id}>" if event.url else (event.title
                                                                              or event.id)
        return {"text": f"[{watch.name}] {link} ({event.source or 'unknown source'}, {day})"}
    return {
        "idempotency_key": event.key,
        "watch": {"id": watch.id, "name": watch.name},
        "article_id": event.id,
        "title": event.title,
        "url": event.url,
        "published": event.published.isoformat() if event.published else None,
        "source": event.source,
        "language": event.language,
        "countries": event.countries,
        "snippet": event.snippet,
    }



async def deliver(
    client: httpx.AsyncClient, event: WatchMatched, watch: Watch, settings: Settings,
    resolve: Resolver = resolve_host,
) -> int:
    """POST the match to the watch's webhook; returns the receiver's status. Raises
    WebhookUnavailable (retried later) or WebhookRefused (dead letter at once)."""
    url = watch.webhook or ""
    lookup_failed: list[OSError] = []

    async def remembering(host: str, port: int) -> list[str]:
        try:
            return await resolve(host, port)
        except OSError as exc:
            lookup_failed.append(exc)
            raise

    # Checked again at each delivery: the name may point elsewhere since the watch was added.
    reason, addresses = await checked_addresses(
        url, allow_private=settings.allow_private_networks,
        allowed_networks=settings.allowed_networks, resolve=remembering)
    if reason:
        error = WebhookUnavailable if lookup_failed else WebhookRefused
        raise error(f"watch {watch.name!r}: webhook {url}: {reason}")
    body = json.dumps(payload(event, watch), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(watch.secret, body),
               DELIVERY_HEADER: event.key}
    target = httpx.URL(url)
    if addresses and target.scheme == "http":
        # DNS rebinding: a second lookup by the client could answer an internal address. Plain
        # http goes to the checked address itself, naming the site in Host (as the fetcher
        # does); https keeps the name, where the certificate check stops rebinding.
        headers["Host"] = target.netloc.decode("ascii")
        target = target.copy_with(host=addresses[0])
    failure = ""
    # The whole delivery stays well inside the claim idle time, after which another consumer
    # (or this one's reclaimer) would take the entry over and deliver it a second time at once.
    deadline = time.monotonic() + settings.claim_idle_ms / 1000 / 2
    for attempt in range(1, settings.webhook_attempts + 1):
        started = time.perf_counter()
        wait: float | None = None
        try:
            # httpx's timeout is per phase; this bounds the whole POST (a dripping answer).
            async with asyncio.timeout(settings.webhook_timeout_s):
                response = await client.post(target, content=body, headers=headers)
        except (httpx.TimeoutException, TimeoutError) as exc:
            failure = f"timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            if 200 <= status < 300:
                logger.info("delivered %s to %s %s %d %.0f ms", event.key, watch.name, url,
                            status, (time.perf_counter() - started) * 1000,
                            extra={"article_id": event.id})
                return status
            if status not in _RETRY_STATUSES:
                raise WebhookRefused(f"watch {watch.name!r}: webhook {url} answered HTTP {status}")
            failure = f"HTTP {status}"
            wait = retry_after_s(response.headers.get("retry-after"))
            if wait is not None and wait > settings.retry_after_max_s:
                break
        if attempt < settings.webhook_attempts:
            backoff = settings.retry_backoff_s * 2 ** (attempt - 1)
            delay = wait if wait is not None else random.uniform(0, backoff)  # noqa: S311 -- jitter
            if time.monotonic() + delay + settings.webhook_timeout_s > deadline:
                break  # retried later by the delivery policy instead
            logger.info("webhook %s for %s: %s; again in %.1f s", url, event.key, failure, delay,
                        extra={"article_id": event.id})
            await asyncio.sleep(delay)
    raise WebhookUnavailable(f"watch {watch.name!r}: webhook {url}: {failure}")
