"""End to end: watches added with the CLI, the reference article published through every stage
(the watcher and the API included, each its own process), delivered once to a local webhook
receiver for `Rahmon --country TJ` and never for `--country FR`, signed, listed in the Atom
feed; the same story republished under another URL does not alert again."""

import asyncio
import hashlib
import hmac
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import asyncpg
import feedparser
import httpx
import pytest
import redis

from tests.integration.test_pipeline import Site, Stack
from tests.servers import PostgresServer, QuietHTTPServer, RedisServer, free_port, reply

SERVICES = ("fetcher", "parser", "enricher", "indexer", "watcher", "api")
TOKEN = "e2e-token"  # noqa: S105 -- a test's API token


class Receiver:
    """Records every webhook POST (headers, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((dict(self.headers.items()), body))
                reply(self, 204, {}, b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"{self.server.base}/hook"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def site(fixtures: Path) -> Site:
    return Site(fixtures)


async def _clean(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS watch_matches, watches, watches_version, "
                           "articles CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, postgres_server: PostgresServer) -> Iterator[Stack]:
    api_port = free_port()
    env = {
        **os.environ, "REDIS_URL": redis_server.url, "DATABASE_URL": postgres_server.url,
        "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "true", "NEWSFLOW_CLAIM_IDLE_MS": "3000",
        "NEWSFLOW_POLL_MS": "200", "NEWSFLOW_MAX_DELIVERIES": "3",
        "NEWSFLOW_API_HOST": "127.0.0.1", "NEWSFLOW_API_PORT": str(api_port),
        "NEWSFLOW_METRICS_PORT": "0", "NEWSFLOW_OBEY_ROBOTS": "false",
        "NEWSFLOW_HOST_DELAY_S": "0", "NEWSFLOW_API_TOKEN": TOKEN,
        "NEWSFLOW_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
    }
    redis.Redis.from_url(redis_server.url).flushall()
    asyncio.run(_clean(postgres_server.url))
    stack = Stack(env, Path(tempfile.mkdtemp(prefix="newsflow-logs-")))
    stack.api = f"http://127.0.0.1:{api_port}"  # type: ignore[attr-defined]
    for name in SERVICES:
        stack.start(name)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{stack.api}/health").status_code == 200:  # type: ignore[attr-defined]
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, stack.log("api")
        time.sleep(0.2)
    yield stack
    stack.stop()
    for name in ("watcher", "api"):
        sys_log = stack.log(name)[-3000:]
        print(f"--- {name} log ---\n{sys_log}")


def add(stack: Stack, *args: str) -> dict[str, Any]:
    done = stack.cli("watch", "add", *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    added: dict[str, Any] = json.loads(done.stdout)
    return added


def wait_for(condition: Any, what: str, stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{stack.log('watcher')[-3000:]}"
        time.sleep(0.2)


def test_bad_watches_are_refused_by_the_cli(stack: Stack) -> None:
    for args, message in (
        (("x", "Rahmon", "--country", "TJK"), "country"),
        (("x", "Rahmon", "--language", "english"), "language"),
        (("x", "!! ... ,"), "no searchable words"),
        (("x",), "needs words or at least one filter"),
        (("x", "Rahmon", "--webhook", "gopher://example.com/"), "not http or https"),
        (("x", "Rahmon", "--format", "xml"), "format"),
    ):
        done = stack.cli("watch", "add", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    # The address guard, with the setting that tests use turned off.
    guarded = {**stack.env, "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "false"}
    refused = Stack(guarded, stack.logs).cli("watch", "add", "x", "Rahmon", "--webhook",
                                             "http://127.0.0.1:9/hook")
    assert refused.returncode == 2 and "loopback" in refused.stderr, refused.stderr
    assert json.loads(stack.cli("watch", "list", "--json").stdout) == []


def test_the_reference_article_is_delivered_once_to_the_matching_watch(
    stack: Stack, site: Site, receiver: Receiver
) -> None:
    tj = add(stack, "tajikistan", "Rahmon", "--country", "TJ", "--webhook", receiver.url)
    fr = add(stack, "france", "Rahmon", "--country", "FR", "--webhook", receiver.url)
    assert tj["secret"] and tj["feed_url"].startswith(stack.api)  # type: ignore[attr-defined]
    done = stack.cli("publish", site.url("article.html"), "--wait", "--timeout", "150")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: receiver.requests, "no webhook delivery", stack)
    time.sleep(2)  # room for a wrong delivery to arrive
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    # The README's check.
    expected = "sha256=" + hmac.new(tj["secret"].encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Newsflow-Signature"], expected)
    payload = json.loads(body)
    assert payload["watch"]["name"] == "tajikistan"
    assert payload["title"] == "Tajikistan and Iran signal start of new era of co-operation"
    assert "TJ" in payload["countries"] and payload["language"] == "en"
    assert payload["idempotency_key"] == f"{tj['id']}:{payload['article_id']}"
    assert headers["X-Newsflow-Delivery"] == payload["idempotency_key"]

    feed = httpx.get(tj["feed_url"])
    parsed = feedparser.parse(feed.content)
    assert parsed.bozo == 0 and [e.title for e in parsed.entries] == [payload["title"]]
    assert httpx.get(tj["feed_url"], headers={"If-None-Match": feed.headers["etag"]}
                     ).status_code == 304
    assert feedparser.parse(httpx.get(fr["feed_url"]).content).entries == []

    listed = {w["name"]: w for w in json.loads(stack.cli("watch", "list", "--json").stdout)}
    assert listed["tajikistan"]["matches"] == {"day": 1, "week": 1}
    assert listed["france"]["matches"] == {"day": 0, "week": 0}
    assert "secret" not in listed["tajikistan"]
    shown = json.loads(stack.cli("watch", "show", "tajikistan", "--json").stdout)
    assert [m["article_id"] for m in shown["recent"]] == [payload["article_id"]]
    tested = stack.cli("watch", "test", "france")
    assert tested.returncode == 0
    assert tested.stdout.startswith("0 stories in the archive (0 articles)")
    tested = stack.cli("watch", "test", "tajikistan")
    assert tested.stdout.startswith("1 story in the archive (1 article)")


def test_the_story_republished_elsewhere_does_not_alert_again(
    stack: Stack, fixtures: Path, receiver: Receiver
) -> None:
    before = len(receiver.requests)
    copy = stack.cli("publish", "--html", str(fixtures / "article.html"), "--url",
                     "https://www.commonspace.eu/news/copy-of-the-story", "--wait")
    assert copy.returncode == 0, copy.stderr
    article_id = copy.stdout.split()[1]
    got = json.loads(stack.cli("get", article_id, "--json").stdout)
    assert got["duplicate_of"], "the copy was not recognised as a near-duplicate"
    wait_for(lambda: f"quiet {article_id}" in stack.log("watcher"), "copy not seen", stack)
    assert len(receiver.requests) == before


def test_remove(stack: Stack) -> None:
    assert stack.cli("watch", "remove", "france").returncode == 0
    gone = stack.cli("watch", "remove", "france")
    assert gone.returncode == 1 and "no watch" in gone.stderr
    assert [w["name"] for w in json.loads(stack.cli("watch", "list", "--json").stdout)] == [
        "tajikistan"]
