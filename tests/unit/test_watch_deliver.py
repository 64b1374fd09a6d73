"""Webhook deliveries without servers (httpx's MockTransport): the signed body, the Slack
shape, retries on 5xx/429 honouring Retry-After, refusals, and the address guard."""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.watcher.deliver import (
    WebhookRefused,
    WebhookUnavailable,
    deliver,
    payload,
)
from shared.messages import WatchMatched
from shared.netguard import retry_after_s
from shared.settings import Settings
from shared.watches import Watch, WatchFilters

SETTINGS = Settings(retry_backoff_s=0.01, webhook_attempts=3, retry_after_max_s=2)
EVENT = WatchMatched(id="art1", url="https://news.example.com/a", watch_id="w1",
                     watch_name="tajik", title="Rahmon visits", source="news.example.com",
                     published=datetime(2024, 5, 2, tzinfo=UTC), language="en",
                     countries=["TJ"], snippet="Rahmon arrived", story="art1",
                     indexed_at=datetime(2024, 5, 2, 1, tzinfo=UTC))


SECRET = "s3cret-s3cret-s3cret"  # noqa: S105 -- a test's webhook secret


def watch(webhook: str = "https://hooks.example.com/in", fmt: str = "json") -> Watch:
    return Watch.model_validate({
        "id": "w1", "name": "tajik", "filters": WatchFilters(q="Rahmon"), "webhook": webhook,
        "format": fmt, "secret": SECRET, "feed_key": "k", "every_copy": False,
        "created_at": datetime.now(UTC)})


async def public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


def client_answering(*answers: httpx.Response, seen: list[httpx.Request]) -> httpx.AsyncClient:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_the_body_is_signed_and_keyed() -> None:
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(204), seen=seen) as client:
        assert await deliver(client, EVENT, watch(), SETTINGS, resolve=public) == 204
    [request] = seen
    body = request.content
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert request.headers["x-newsflow-signature"] == f"sha256={expected}"
    assert request.headers["x-newsflow-delivery"] == "w1:art1"
    # https keeps the name (the certificate check stops DNS rebinding).
    assert request.url.host == "hooks.example.com"
    data = json.loads(body)
    assert data == {
        "idempotency_key": "w1:art1", "watch": {"id": "w1", "name": "tajik"},
        "article_id": "art1", "title": "Rahmon visits", "url": "https://news.example.com/a",
        "published": "2024-05-02T00:00:00+00:00", "source": "news.example.com",
        "language": "en", "countries": ["TJ"], "snippet": "Rahmon arrived",
    }


def test_slack_format() -> None:
    assert payload(EVENT, watch(fmt="slack")) == {
        "text": "[tajik] <https://news.example.com/a|Rahmon visits> (news.example.com, "
                "2024-05-02)"}


async def test_5xx_and_429_are_retried_honouring_retry_after() -> None:
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(503), httpx.Response(429, headers={
            "Retry-After": "0"}), httpx.Response(200), seen=seen) as client:
        assert await deliver(client, EVENT, watch(), SETTINGS, resolve=public) == 200
    assert len(seen) == 3


async def test_a_receiver_that_keeps_failing_is_unavailable_with_the_reason() -> None:
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(500), seen=seen) as client:
        with pytest.raises(WebhookUnavailable, match="HTTP 500"):
            await deliver(client, EVENT, watch(), SETTINGS, resolve=public)
    assert len(seen) == SETTINGS.webhook_attempts


async def test_a_long_retry_after_ends_the_delivery_at_once() -> None:
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(429, headers={"Retry-After": "3600"}),
                                seen=seen) as client:
        with pytest.raises(WebhookUnavailable, match="429"):
            await deliver(client, EVENT, watch(), SETTINGS, resolve=public)
    assert len(seen) == 1


async def test_timeouts_are_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        assert await deliver(client, EVENT, watch(), SETTINGS, resolve=public) == 200
    assert calls == 2


@pytest.mark.parametrize("status", [301, 400, 404, 410])
async def test_other_answers_are_refused_for_good(status: int) -> None:
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(status), seen=seen) as client:
        with pytest.raises(WebhookRefused, match=str(status)):
            await deliver(client, EVENT, watch(), SETTINGS, resolve=public)
    assert len(seen) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook",
                                 "http://[::1]/hook", "http://internal.example/hook"])
async def test_internal_targets_are_refused(url: str) -> None:
    async def internal(host: str, port: int) -> list[str]:
        return ["192.168.1.5"]

    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(200), seen=seen) as client:
        with pytest.raises(WebhookRefused, match=r"refused|resolves to private"):
            await deliver(client, EVENT, watch(url), SETTINGS, resolve=internal)
    assert not seen


async def test_a_failed_lookup_is_transient() -> None:
    async def down(host: str, port: int) -> list[str]:
        raise OSError("temporary failure in name resolution")

    async with client_answering(httpx.Response(200), seen=[]) as client:
        with pytest.raises(WebhookUnavailable, match="cannot resolve"):
            await deliver(client, EVENT, watch(), SETTINGS, resolve=down)


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), (None, None), ("soon", None),
                                                ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after(value: Any, seconds: float | None) -> None:
    assert retry_after_s(value) == seconds


async def test_plain_http_goes_to_the_checked_address() -> None:
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(200), seen=seen) as client:
        await deliver(client, EVENT, watch("http://hooks.example.com:8080/in?x=1"), SETTINGS,
                      resolve=public)
    [request] = seen
    assert request.url.host == "93.184.216.34" and request.url.port == 8080
    assert request.url.raw_path == b"/in?x=1"
    assert request.headers["host"] == "hooks.example.com:8080"


async def test_a_delivery_stays_inside_the_claim_idle_time() -> None:
    # Another POST could outlast half the claim idle time: left to a later delivery instead.
    short = Settings(claim_idle_ms=4000, webhook_timeout_s=5, webhook_attempts=3)
    seen: list[httpx.Request] = []
    async with client_answering(httpx.Response(503), seen=seen) as client:
        with pytest.raises(WebhookUnavailable, match="503"):
            await deliver(client, EVENT, watch(), short, resolve=public)
    assert len(seen) == 1
