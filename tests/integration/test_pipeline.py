"""End to end: the four services as separate processes over a real Redis and PostgreSQL; a
local web server serves the reference page; the CLI, redis-cli and the HTTP API drive it."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tests.servers import (
    PostgresServer,
    QuietHTTPServer,
    RedisServer,
    free_port,
    redis_binary,
)

SERVICES = ("fetcher", "parser", "enricher", "indexer", "api")


class Site:
    """A local news site: /news/<name> serves tests/fixtures/<name>."""

    def __init__(self, root: Path) -> None:
        handler = partial(_QuietHandler, directory=str(root))
        self.server = QuietHTTPServer.start(handler)
        self.base = self.server.base

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Stack:
    """The services running as `python -m services.cli run <name>`, logging to files."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", name], env=self.env,
            stdout=log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args], env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False,
        )


@pytest.fixture(scope="module")
def site(fixtures: Path) -> Site:
    return Site(fixtures)


async def _truncate(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS articles")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, postgres_server: PostgresServer) -> Iterator[Stack]:
    api_port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": postgres_server.url,
        "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "true",
        "NEWSFLOW_CLAIM_IDLE_MS": "3000",
        "NEWSFLOW_POLL_MS": "200",
        "NEWSFLOW_MAX_DELIVERIES": "3",
        "NEWSFLOW_API_HOST": "127.0.0.1",
        "NEWSFLOW_API_PORT": str(api_port),
        "NEWSFLOW_METRICS_PORT": "0",
        "NEWSFLOW_OBEY_ROBOTS": "false",
        "NEWSFLOW_HOST_DELAY_S": "0",
    }
    # A clean slate: other test modules share these servers.
    redis.Redis.from_url(redis_server.url).flushall()
    asyncio.run(_truncate(postgres_server.url))
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
    for name in SERVICES:
        sys.stderr.write(f"--- {name} log ---\n{stack.log(name)[-3000:]}\n")


@pytest.fixture(scope="module")
def reference(stack: Stack, site: Site, fixtures: Path) -> dict[str, Any]:
    """The reference article, published by URL and waited for."""
    done = stack.cli("publish", site.url("article.html"), "--wait", "--timeout", "150")
    assert done.returncode == 0, done.stdout + done.stderr
    found = stack.cli("search", "Rahmon", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert len(hits) == 1, hits
    got = stack.cli("get", hits[0]["id"], "--json")
    assert got.returncode == 0, got.stderr
    article: dict[str, Any] = json.loads(got.stdout)
    return article


def test_reference_article_flows_through_every_stage(
    reference: dict[str, Any], fixtures: Path
) -> None:
    expected = json.loads((fixtures / "expected.json").read_text())
    assert reference["title"] == expected["title"]
    assert reference["site_name"] == expected["site_name"]
    assert reference["published"].startswith(expected["published"])
    assert reference["language"] == expected["language"]
    assert reference["text"].startswith(expected["body_first_sentence"])
    for junk in expected["body_must_not_contain"]:
        assert junk not in reference["text"], junk
    people = {e["name"] for e in reference["entities"] if e["type"] == "person"}
    places = {e["name"] for e in reference["entities"] if e["type"] == "place"}
    assert set(expected["persons"]) <= people
    assert set(expected["places"]) <= places
    assert set(reference["countries"]) == set(expected["countries"])
    assert reference["keywords"]
    assert set(reference["trace"]) >= {"fetched", "parsed", "enriched", "indexed"}


def test_each_stage_logs_one_line_per_article(stack: Stack, reference: dict[str, Any]) -> None:
    article_id = reference["id"]
    for service, verb in (("fetcher", "fetched"), ("parser", "parsed"),
                          ("enricher", "enriched"), ("indexer", "indexed")):
        lines = [line for line in stack.log(service).splitlines()
                 if f"{verb} {article_id}" in line]
        assert len(lines) == 1, (service, stack.log(service)[-2000:])


def test_http_api_searches_and_returns_the_article(
    stack: Stack, reference: dict[str, Any]
) -> None:
    api = stack.api  # type: ignore[attr-defined]
    results = httpx.get(f"{api}/search", params={"q": "Rahmon", "country": "TJ"}).json()
    assert [h["id"] for h in results["hits"]] == [reference["id"]]
    assert "<mark>" in results["hits"][0]["snippet"]
    assert httpx.get(f"{api}/search", params={"q": "Rahmon", "language": "de"}).json()[
        "total"] == 0
    article = httpx.get(f"{api}/articles/{reference['id']}").json()
    assert article["countries"] == reference["countries"]
    assert httpx.get(f"{api}/articles/nope").status_code == 404
    assert httpx.get(f"{api}/health").json()["status"] == "ok"


def test_republishing_updates_in_place(stack: Stack, site: Site, reference: dict[str, Any]) -> None:
    again = stack.cli("publish", site.url("article.html"), "--wait", "--timeout", "120")
    assert again.returncode == 0, again.stderr
    exported = [json.loads(line) for line in stack.cli("export").stdout.splitlines()]
    assert [a["id"] for a in exported].count(reference["id"]) == 1


def test_raw_html_and_redis_cli_publishing(stack: Stack, fixtures: Path, site: Site) -> None:
    by_html = stack.cli("publish", "--html", str(fixtures / "article.html"), "--url",
                        "https://www.commonspace.eu/news/copy", "--wait")
    assert by_html.returncode == 0, by_html.stderr
    # The README's documented command, run with a real redis-cli.
    cli = shutil.which("redis-cli") or str(Path(redis_binary()).with_name("valkey-cli"))
    port = stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
    url = site.url("article.html") + "?via=redis-cli"
    body = json.dumps({"url": url})
    added = subprocess.run([cli, "-p", port, "XADD", "articles:submitted", "*", "__data__", body],
                           capture_output=True, text=True, check=True)
    assert added.stdout.strip()
    deadline = time.monotonic() + 120
    while "via=redis-cli" not in stack.cli("export").stdout:
        assert time.monotonic() < deadline, stack.log("fetcher")[-2000:]
        time.sleep(0.5)


def test_bad_input_is_dead_lettered_and_the_next_article_still_flows(
    stack: Stack, site: Site
) -> None:
    cli = shutil.which("redis-cli") or str(Path(redis_binary()).with_name("valkey-cli"))
    port = stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
    subprocess.run([cli, "-p", port, "XADD", "articles:submitted", "*", "__data__", "{oops"],
                   check=True, capture_output=True)
    subprocess.run([cli, "-p", port, "XADD", "articles:submitted", "*", "__data__",
                    '{"id": "x", "url": "ftp://nowhere"}'], check=True, capture_output=True)
    missing = stack.cli("publish", site.url("no-such-page.html"), "--wait", "--timeout", "60")
    assert missing.returncode == 1
    assert "dead" in missing.stderr and "404" in missing.stderr, missing.stderr
    good = stack.cli("publish", site.url("article.html") + "?after=bad", "--wait")
    assert good.returncode == 0, good.stderr
    dead = stack.cli("dead", "list").stdout
    assert "invalid message" in dead and "404" in dead, dead
    status = stack.cli("status").stdout
    assert "articles:dead" in status and "fetcher" in status
