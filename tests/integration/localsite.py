"""A local web server for the fetcher's tests: routes set by each test, every request recorded,
and the most requests it ever had in flight."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import QuietHTTPServer, reply

PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>Hello</p></body></html>"

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    started: float


@dataclass
class LocalSite:
    """A web server on 127.0.0.1 whose routes a test sets; it records every request and the
    most requests it ever had in flight at once."""

    routes: dict[str, Callable[["LocalSite", dict[str, str]], Reply]] = field(default_factory=dict)
    delay_s: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def hits(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def page(self, path: str, body: bytes = PAGE, **headers: str) -> None:
        self.routes[path] = lambda _site, _h: (
            200, {"Content-Type": "text/html; charset=utf-8", **headers}, body)


def serve(site: LocalSite) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            with site.lock:
                site.seen.append(Seen(self.path, headers, time.monotonic()))
                site.in_flight += 1
                site.max_in_flight = max(site.max_in_flight, site.in_flight)
            try:
                route = site.routes.get(self.path)
                if route is None:
                    status, extra, body = 404, {"Content-Type": "text/plain"}, b"no"
                else:
                    status, extra, body = route(site, headers)
                if site.delay_s and self.path != "/robots.txt":
                    time.sleep(site.delay_s)
                reply(self, status, extra, body)
            finally:
                with site.lock:
                    site.in_flight -= 1

    httpd = QuietHTTPServer.start(Handler)
    site.base = httpd.base
    return httpd
