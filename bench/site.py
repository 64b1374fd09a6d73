"""A local news site for benchmarks and tests: N distinct generated article pages (mixed sizes and
languages, realistic markup with boilerplate around the story), plus pages that must fail."""

import json
import random
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Per language: people, places, and sentence frames ({p} a person, {c} a place).
_LANGUAGES: dict[str, dict[str, list[str]]] = {
    "en": {
        "people": ["Emomali Rahmon", "Ebrahim Raisi", "Maia Sandu", "Olaf Scholz", "Narendra Modi"],
        "places": ["Tehran", "Dushanbe", "Berlin", "Chisinau", "New Delhi", "Kyiv", "Paris"],
        "frames": [
            "{p} arrived in {c} on Tuesday for talks on trade and energy.",
            "Officials in {c} said the agreement would take effect next year.",
            "Analysts expect {p} to raise the question of security during the visit.",
            "The government in {c} has faced criticism over rising prices this winter.",
            "{p} told reporters that the two sides had made real progress on transport.",
            "Local media in {c} reported that thousands attended the rally on Sunday.",
            "The ministry said it would publish the full text of the accord within days.",
            "Critics argue the plan does little for farmers outside {c}.",
        ],
    },
    "de": {
        "people": ["Olaf Scholz", "Annalena Baerbock", "Karl Nehammer", "Viola Amherd"],
        "places": ["Berlin", "Wien", "Bern", "Hamburg", "München", "Dresden"],
        "frames": [
            "{p} ist am Dienstag zu Gesprächen über Handel und Energie in {c} eingetroffen.",
            "Die Regierung in {c} kündigte an, das Abkommen im nächsten Jahr umzusetzen.",
            "Beobachter erwarten, dass {p} die Sicherheitslage ansprechen wird.",
            "In {c} demonstrierten am Wochenende mehrere tausend Menschen.",
            "Das Ministerium will den vollständigen Text in den kommenden Tagen veröffentlichen.",
            "Kritiker bemängeln, der Plan helfe den Landwirten außerhalb von {c} kaum.",
        ],
    },
    "fr": {
        "people": ["Emmanuel Macron", "Gabriel Attal", "Alexander De Croo", "Viola Amherd"],
        "places": ["Paris", "Bruxelles", "Lyon", "Marseille", "Genève", "Bordeaux"],
        "frames": [
            "{p} est arrivé mardi à {c} pour des discussions sur le commerce et l'énergie.",
            "Le gouvernement à {c} a annoncé que l'accord entrera en vigueur l'an prochain.",
            "Les analystes s'attendent à ce que {p} aborde la question de la sécurité.",
            "Des milliers de personnes ont manifesté dimanche dans les rues de {c}.",
            "Le ministère publiera le texte complet de l'accord dans les prochains jours.",
            "Selon les critiques, le plan aide peu les agriculteurs en dehors de {c}.",
        ],
    },
    "es": {
        "people": ["Pedro Sánchez", "Gustavo Petro", "Claudia Sheinbaum", "Javier Milei"],
        "places": ["Madrid", "Bogotá", "Ciudad de México", "Buenos Aires", "Sevilla"],
        "frames": [
            "{p} llegó el martes a {c} para conversar sobre comercio y energía.",
            "El gobierno en {c} anunció que el acuerdo entrará en vigor el próximo año.",
            "Los analistas esperan que {p} plantee la cuestión de la seguridad.",
            "Miles de personas se manifestaron el domingo en las calles de {c}.",
            "El ministerio publicará el texto completo del acuerdo en los próximos días.",
            "Los críticos sostienen que el plan apenas ayuda a los agricultores fuera de {c}.",
        ],
    },
}

_PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8">
<title>{title} | Newsflow Bench Times</title>
<meta property="og:title" content="{title}">
<meta property="og:site_name" content="Newsflow Bench Times">
<meta name="description" content="{lead}">
<link rel="canonical" href="{url}">
<script type="application/ld+json">{jsonld}</script>
</head><body>
<header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/sport">Sport</a></nav>
</header>
<main><article>
<h1>{title}</h1><p class="byline">By {author}</p><time datetime="{date}">{date}</time>
{paragraphs}
</article>
<aside><h2>Related articles</h2>
<ul><li><a href="/x">Council of Europe opens claims register</a></li>
<li><a href="/y">Markets close higher on Friday</a></li></ul></aside></main>
<footer><p>© Newsflow Bench Times. All rights reserved.</p></footer>
</body></html>"""


@dataclass(frozen=True)
class Page:
    path: str
    language: str
    title: str
    html: str
    words: int


def make_page(n: int, base_url: str = "", seed: int = 0) -> Page:
    """Article n of the generated site: the same n always gives the same page."""
    rng = random.Random(seed * 1_000_003 + n)
    lang = rng.choice(list(_LANGUAGES))
    vocab = _LANGUAGES[lang]
    person, place = rng.choice(vocab["people"]), rng.choice(vocab["places"])
    # Mixed sizes: mostly news-length, some short, a few long reads.
    paragraphs = rng.choice([3, 5, 6, 8, 10, 12, 15, 25, 40])
    body: list[str] = []
    for p in range(paragraphs):
        sentences = [
            rng.choice(vocab["frames"]).format(p=rng.choice(vocab["people"]),
                                               c=rng.choice(vocab["places"]))
            for _ in range(rng.randint(2, 5))
        ]
        # A unique marker keeps every page distinct (no near-duplicates by accident).
        sentences.append(f"Ref {n}-{p}-{rng.randint(1000, 9999)}.")
        body.append(" ".join(sentences))
    title = f"{person} in {place}: report {n}"
    path = f"/news/{lang}/{n}.html"
    date = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00+00:00"
    jsonld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle",
                         "headline": title, "datePublished": date, "inLanguage": lang,
                         "author": {"@type": "Person", "name": "Jane Reporter"}})
    html = _PAGE.format(
        lang=lang, title=title, lead=body[0][:150], url=base_url + path, jsonld=jsonld,
        author="Jane Reporter", date=date, paragraphs="\n".join(f"<p>{t}</p>" for t in body),
    )
    return Page(path, lang, title, html, sum(len(t.split()) for t in body))


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        site = self.server.site
        with site.lock:
            site.requests += 1
        if path == "/bad/not-html":
            self._send(200, "application/pdf", b"%PDF-1.4 not a page")
        elif path == "/bad/huge":
            self._send(200, "text/html", b"<html><body>" + b"x" * (site.huge_bytes) + b"</body>")
        elif path == "/bad/unavailable":
            self._send(503, "text/plain", b"try later")
        elif path == "/bad/nul-headline":
            page = make_page(site.n + 1, site.base_url, site.seed).html
            # A NUL byte in the JSON-LD headline: JSON escapes it, the parser reads it back.
            page = page.replace('"headline": "', '"headline": "Nul \\u0000 byte: ', 1)
            self._send(200, "text/html; charset=utf-8", page.encode())
        elif path.startswith("/slow/"):
            self._slow(path)
        elif path.startswith("/news/"):
            try:
                n = int(path.rsplit("/", 1)[1].split(".")[0])
            except ValueError:
                n = -1
            if 0 <= n < site.n:
                self._send(200, "text/html; charset=utf-8",
                           make_page(n, site.base_url, site.seed).html.encode())
            else:
                self._send(404, "text/plain", b"no such page")
        else:
            self._send(404, "text/plain", b"no such page")

    def _slow(self, path: str) -> None:
        """A good article served after `slow_s` seconds. Counts the requests for one path that
        overlap (a second replica fetching what the first still fetches); a client that hung
        up (a replica killed) ends its request at once, so it is not counted."""
        site = self.server.site
        try:
            k = int(path.rsplit("/", 1)[1].split(".", maxsplit=1)[0])
        except ValueError:
            k = -1
        if not 0 <= k < site.slow_pages:
            self._send(404, "text/plain", b"no such page")
            return
        with site.lock:
            site.in_flight[path] = site.in_flight.get(path, 0) + 1
            if site.in_flight[path] > 1:
                site.overlaps.append(path)
        try:
            deadline = time.monotonic() + site.slow_s
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.1)
                if readable and not self.connection.recv(1, 2):  # MSG_PEEK: b"" = hung up
                    return
            self._send(200, "text/html; charset=utf-8",
                       make_page(SLOW_BASE + k, site.base_url, site.seed).html.encode())
        finally:
            with site.lock:
                site.in_flight[path] -= 1

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: "Site"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A fetcher killed mid-request, or one refusing an oversized page, hangs up: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


SLOW_BASE = 1_000_000
"""Slow page k is generated article SLOW_BASE + k (distinct from the N good ones)."""


class Site:
    """The running site: `urls()` lists its N good articles; `bad_urls()` the ones that fail;
    `slow_urls()` good articles served after `slow_s` seconds each."""

    def __init__(self, n: int, seed: int = 0, huge_bytes: int = 6 * 1024 * 1024,
                 slow_pages: int = 0, slow_s: float = 0.0) -> None:
        self.n = n
        self.seed = seed
        self.huge_bytes = huge_bytes
        self.slow_pages = slow_pages
        self.slow_s = slow_s
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []
        """Slow paths requested again while a request for them was still being served."""
        self.requests = 0
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.site = self
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def urls(self) -> list[str]:
        return [self.base_url + make_page(n, self.base_url, self.seed).path for n in range(self.n)]

    def slow_urls(self) -> list[str]:
        return [f"{self.base_url}/slow/{k}.html" for k in range(self.slow_pages)]

    def bad_urls(self) -> dict[str, str]:
        """URL → the words its dead letter's reason must contain."""
        return {
            self.base_url + "/bad/not-html": "NotHtml",
            self.base_url + "/bad/huge": "PageTooLarge",
            self.base_url + "/bad/unavailable": "503",
        }


@contextmanager
def serving(n: int, seed: int = 0, slow_pages: int = 0, slow_s: float = 0.0) -> Iterator[Site]:
    site = Site(n, seed, slow_pages=slow_pages, slow_s=slow_s)
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()
