"""`newsflow up` as a user runs it: the whole stack from one command in a data folder, the CLI in
another "terminal" reaching it with no setting, a replica killed outright restarted, SIGTERM,
and a second `up` that carries on where the first stopped."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.servers import QuietHTTPServer, free_port, reply

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"
ROOT = Path(__file__).parents[2]
REFERENCE_URL = ("https://www.commonspace.eu/news/"
                 "tajikistan-and-iran-signal-start-new-era-co-operation")


class Up:
    """A running `newsflow up`, its combined log collected line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", *args], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 240.0, after: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if found := re.search(pattern, line):
                    return found
            if self.proc.poll() is not None and not any(
                    re.search(pattern, line) for line in self.lines[after:]):
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}; the log ends:\n"
                             + "\n".join(self.lines[-60:]))

    def stop(self, timeout: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def cli(env: dict[str, str], *args: str,
        timeout: float = 200.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp itself: PostgreSQL runs as an unprivileged user when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="newsflow-up-"))
    folder.chmod(0o755)
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def second_site() -> Iterator[str]:
    """A local site serving a second, different article for the fetcher."""
    title, *paragraphs = (FIXTURES / "enricher" / "same_topic.txt").read_text().split("\n\n")
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    page = (f"<html lang=en><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            f"{body}</article></body></html>").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/robots.txt":
                reply(self, 404, {}, b"")
            else:
                reply(self, 200, {"Content-Type": "text/html; charset=utf-8"}, page)

        def log_message(self, *args: Any) -> None:
            pass

    server = QuietHTTPServer.start(Handler)
    yield f"{server.base}/news/second-story"
    server.shutdown()
    server.server_close()


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DATABASE_URL", "NEWSFLOW_REDIS_URL",
                        "NEWSFLOW_DATABASE_URL")}
    env.update({
        "PYTHONPATH": str(ROOT), "NEWSFLOW_DATA_DIR": str(data_dir),
        "NEWSFLOW_API_PORT": str(free_port()), "NEWSFLOW_METRICS_PORT": str(free_port()),
        # The second article comes from a local site; retries quick, so restarts are seen.
        "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "true", "NEWSFLOW_CLAIM_IDLE_MS": "3000",
        "NEWSFLOW_HOST_DELAY_S": "0", "NEWSFLOW_GRACEFUL_TIMEOUT_S": "10",
    })
    return env


def _found(env: dict[str, str], query: str) -> set[str]:
    done = cli(env, "search", query, "--json", "--limit", "50", "--no-collapse")
    assert done.returncode == 0, done.stderr
    return {hit["id"] for hit in json.loads(done.stdout)["hits"]}


def _parser_pids(env: dict[str, str]) -> set[int]:
    done = cli(env, "status")
    assert done.returncode == 0, done.stderr
    return {int(m.group(1)) for m in re.finditer(r"^parser\s+\S+-(\d+)\s+127\.0\.0\.1:\d+",
                                                 done.stdout, re.M)}


def test_up_runs_the_stack_restarts_the_dead_and_carries_on(data_dir: Path,
                                                             second_site: str) -> None:
    env = _env(data_dir)
    up = Up(env, "--data-dir", str(data_dir), "--scale", "parser=2")
    try:
        up.wait_for(r"^up\s+\| newsflow is up$")
        api = up.wait_for(r"search page\s+(http://\S+)/").group(1)
        assert (data_dir / "stack.json").exists()
        assert re.search(r"metrics .*parser-1 \d+, parser-2 \d+", "\n".join(up.lines))

        # The CLI, with no REDIS_URL / DATABASE_URL, reaches the stack through the data folder.
        published = cli(env, "publish", "--html", str(FIXTURES / "article.html"), "--url",
                        REFERENCE_URL, "--wait", "--timeout", "180")
        assert published.returncode == 0, published.stdout + published.stderr
        reference = re.search(r"submitted (\S+)", published.stdout).group(1)  # type: ignore[union-attr]
        assert reference in _found(env, "Rahmon")
        up.wait_for(rf"^indexer-1\s+\| INFO\s+indexed {reference} 'Tajikistan and Iran")
        up.wait_for(rf"^parser-\d\s+\| INFO\s+parsed {reference} 'Tajikistan and Iran signal "
                    r"start of new era of co-operation' \d+ words en")
        assert all("GET /health" not in line for line in up.lines)

        # Each parser has its own metrics port; one killed outright is restarted.
        deadline = time.monotonic() + 60
        while len(pids := _parser_pids(env)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(pids) == 2, cli(env, "status").stdout
        victim = min(pids)
        mark = len(up.lines)
        os.kill(victim, signal.SIGKILL)
        up.wait_for(r"^up\s+\| parser-\d exited with signal SIGKILL after \d+ s; restarting it",
                    after=mark, timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = _parser_pids(env)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the killed parser was not replaced: {_parser_pids(env)}")

        # A second article, published and then the stack stopped at once: nothing is lost.
        published = cli(env, "publish", second_site)
        assert published.returncode == 0, published.stderr
        second = re.search(r"submitted (\S+)", published.stdout).group(1)  # type: ignore[union-attr]
    finally:
        code = up.stop()
    assert code == 0, "\n".join(up.lines[-40:])
    assert up.lines[-1].endswith("(newsflow up carries on from it)")
    assert not (data_dir / "stack.json").exists()

    again = Up(env, "--data-dir", str(data_dir), "--scale", "parser=2")
    try:
        again.wait_for(r"^up\s+\| newsflow is up$")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if {reference, second} <= _found(env, ""):
                break
            time.sleep(2)
        else:
            raise AssertionError("after a restart, not both articles are indexed:\n"
                                 + "\n".join(again.lines[-60:]))
        assert api.startswith("http://127.0.0.1:")
    finally:
        assert again.stop() == 0
