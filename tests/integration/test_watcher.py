"""The watcher as its own process over real Redis and PostgreSQL, delivering to a webhook receiver
on loopback: a receiver that is down for a while, one that fails forever (dead letter), a watcher
killed with -9 in the middle of a delivery, and the Slack shape."""

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import store, watches
from shared.messages import ArticleEnriched, ArticleIndexed
from shared.streams import DATA_FIELD, INDEXED
from tests.servers import PostgresServer, QuietHTTPServer, RedisServer, free_port, reply

TEXT = ("President Emomali Rahmon of Tajikistan received the Iranian delegation in Dushanbe, "
        "where the two sides signed agreements on energy and transport.")


class Receiver:
    """A webhook receiver on a fixed loopback port: records each POST, answers `status`; can be
    stopped and started again on the same port, and can hold requests until released."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.hold = threading.Event()
        self.hold.set()
        self.server: QuietHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((dict(self.headers.items()), body))
                outer.hold.wait(60)
                reply(self, outer.status, {}, b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def keys(self) -> list[str]:
        return [headers["X-Newsflow-Delivery"] for headers, _ in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.hold.set()
    r.stop()


class Watcher:
    """`newsflow run watcher` in a process of its own, logging to a file."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.log = Path(tempfile.mkdtemp(prefix="newsflow-watcher-")) / "watcher.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "watcher"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def env(redis_server: RedisServer, postgres_server: PostgresServer) -> dict[str, str]:
    redis.Redis.from_url(redis_server.url).flushall()
    return {
        **os.environ, "REDIS_URL": redis_server.url, "DATABASE_URL": postgres_server.url,
        "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "true", "NEWSFLOW_CLAIM_IDLE_MS": "2000",
        "NEWSFLOW_POLL_MS": "100", "NEWSFLOW_MAX_DELIVERIES": "3",
        "NEWSFLOW_METRICS_PORT": "0", "NEWSFLOW_API_HOST": "127.0.0.1",
        "NEWSFLOW_RETRY_BACKOFF_S": "0.05", "NEWSFLOW_WEBHOOK_ATTEMPTS": "2",
        "NEWSFLOW_WEBHOOK_TIMEOUT_S": "30", "NEWSFLOW_GRACEFUL_TIMEOUT_S": "3",
    }


@pytest.fixture
def watcher(env: dict[str, str]) -> Iterator[Watcher]:
    w = Watcher(env)
    yield w
    w.stop()
    sys.stderr.write(f"--- watcher log ---\n{w.text()[-3000:]}\n")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _prepare(database_url: str, specs: list[watches.WatchSpec]) -> list[watches.Watch]:
    pool = await watches.connect(database_url)
    try:
        await pool.execute("TRUNCATE watches CASCADE")
        await pool.execute("TRUNCATE articles")
        saved = [await watches.create_watch(pool, s, allow_private=True) for s in specs]
        await store.upsert_articles(pool, [ArticleEnriched(
            id="tj1", url="https://news.example.com/tj1", title="Rahmon receives Iranian envoys",
            text=TEXT, language="en", countries=["TJ", "IR"],
            published=datetime(2024, 5, 2, tzinfo=UTC))])
        return saved
    finally:
        await pool.close()


def prepare(env: dict[str, str], *specs: dict[str, Any]) -> list[watches.Watch]:
    made = []
    for s in specs:
        filters = {k: s[k] for k in s if k not in ("name", "webhook", "format", "every_copy")}
        made.append(watches.WatchSpec.model_validate(
            {**{k: s[k] for k in s if k not in filters}, "filters": filters}))
    saved: list[watches.Watch] = run(_prepare(env["DATABASE_URL"], made))
    return saved


def publish_indexed(env: dict[str, str], article_id: str = "tj1") -> None:
    event = ArticleIndexed(id=article_id, url=f"https://news.example.com/{article_id}")
    redis.Redis.from_url(env["REDIS_URL"]).xadd(INDEXED.name,
                                                {DATA_FIELD: event.model_dump_json()})


def wait_until(condition: Callable[[], bool], what: str, watcher: Watcher,
               timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{watcher.text()[-3000:]}"
        time.sleep(0.1)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The README's receiver check."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Newsflow-Signature"])


def test_one_signed_delivery_for_the_matching_watch_none_for_the_other(
    env: dict[str, str], watcher: Watcher, receiver: Receiver
) -> None:
    tj, _ = prepare(env, {"name": "tj", "q": "Rahmon", "country": "TJ", "webhook": receiver.url},
                    {"name": "fr", "q": "Rahmon", "country": "FR", "webhook": receiver.url})
    watcher.start()
    publish_indexed(env)
    wait_until(lambda: len(receiver.requests) >= 1, "no delivery", watcher)
    time.sleep(1.0)  # room for a wrong second delivery to show up
    assert receiver.keys() == [f"{tj.id}:tj1"]
    headers, body = receiver.requests[0]
    assert verify(tj.secret, headers, body)
    assert not verify(tj.secret + "x", headers, body)
    data = json.loads(body)
    assert data["watch"] == {"id": tj.id, "name": "tj"} and data["article_id"] == "tj1"
    assert data["countries"] == ["TJ", "IR"] and "Rahmon" in data["snippet"]


def test_a_receiver_down_for_a_while_gets_the_delivery_when_it_is_back(
    env: dict[str, str], watcher: Watcher, receiver: Receiver
) -> None:
    env["NEWSFLOW_MAX_DELIVERIES"] = "6"
    [tj] = prepare(env, {"name": "tj", "q": "Rahmon", "webhook": receiver.url})
    receiver.stop()
    watcher.start()
    publish_indexed(env)
    wait_until(lambda: "ConnectError" in watcher.text(), "no failed attempt", watcher)
    receiver.start()
    wait_until(lambda: len(receiver.requests) >= 1, "not delivered after the receiver came back",
               watcher)
    assert set(receiver.keys()) == {f"{tj.id}:tj1"}
    assert "watches:matched" not in watcher.cli("dead", "list").stdout


def test_a_receiver_failing_forever_ends_in_the_dead_letters_with_the_reason(
    env: dict[str, str], watcher: Watcher, receiver: Receiver
) -> None:
    receiver.status = 500
    [tj] = prepare(env, {"name": "tj", "q": "Rahmon", "webhook": receiver.url})
    env["NEWSFLOW_WEBHOOK_TIMEOUT_S"] = "0.5"  # two POSTs fit in a delivery
    watcher.start()
    publish_indexed(env)

    def dead() -> bool:
        return "HTTP 500" in watcher.cli("dead", "list").stdout

    wait_until(dead, "no dead letter", watcher, timeout=90)
    listed = watcher.cli("dead", "list").stdout
    assert "watcher" in listed and "tj1" in listed
    assert "WebhookUnavailable: watch 'tj': webhook" in listed, listed
    # Three deliveries of two POSTs each, every one with the same key.
    assert set(receiver.keys()) == {f"{tj.id}:tj1"} and len(receiver.requests) == 6
    assert listed.count("tj1") == 1


def test_a_watcher_killed_mid_delivery_delivers_after_restart_with_the_same_key(
    env: dict[str, str], watcher: Watcher, receiver: Receiver
) -> None:
    [tj] = prepare(env, {"name": "tj", "q": "Rahmon", "webhook": receiver.url})
    receiver.hold.clear()  # the first POST hangs
    watcher.start()
    publish_indexed(env)
    wait_until(lambda: len(receiver.requests) >= 1, "no delivery started", watcher)
    watcher.stop(kill=True)
    receiver.hold.set()
    watcher.start()
    wait_until(lambda: len(receiver.requests) >= 2, "not delivered again after kill -9", watcher)
    assert receiver.keys()[:2] == [f"{tj.id}:tj1", f"{tj.id}:tj1"]
    # The match itself was handed on once (the kill came after it).
    stream = redis.Redis.from_url(env["REDIS_URL"]).xrange("watches:matched")
    assert len(stream) == 1


def test_slack_format(env: dict[str, str], watcher: Watcher, receiver: Receiver) -> None:
    prepare(env, {"name": "chat", "q": "Dushanbe", "webhook": receiver.url, "format": "slack"})
    watcher.start()
    publish_indexed(env)
    wait_until(lambda: len(receiver.requests) >= 1, "no delivery", watcher)
    assert json.loads(receiver.requests[0][1]) == {
        "text": "[chat] <https://news.example.com/tj1|Rahmon receives Iranian envoys> "
                "(news.example.com, 2024-05-02)"}

