"""Feeds (RSS, Atom) and sitemaps (sitemap indexes and Google News sitemaps too) read into the
article URLs they list, without duplicates."""

import io
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import urljoin

import feedparser

from services.fetcher.content import GZIP_MAGIC, Decompressor
from services.fetcher.fetch import FetchedPage
from shared.errors import PermanentError
from shared.messages import http_url

logger = logging.getLogger("newsflow.sources")

Fetch = Callable[[str], Awaitable[FetchedPage]]
"""Fetches a feed or sitemap (through the guarded, polite fetch, kind XML)."""

_SITEMAP_ROOTS = (b"<urlset", b"<sitemapindex")


class SourceError(PermanentError):
    """A feed or sitemap that cannot be read."""


def _http_url(url: str) -> bool:
    """Whether an article could be submitted with this URL (an entry that could not would fail
    the whole feed's submission)."""
    try:
        http_url(url)
    except ValueError:
        return False
    return True


def _unique(urls: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(u for u in urls if _http_url(u)))


def gunzipped(body: bytes, cap: int) -> bytes:
    """The body, uncompressed if it is a gzip file (sitemap.xml.gz), within `cap` bytes."""
    if not body.startswith(GZIP_MAGIC):
        return body
    data = Decompressor("gzip").decompress(body, cap + 1)
    if len(data) > cap:
        raise SourceError(f"gzip file over the {cap}-byte cap once uncompressed")
    return data


def is_sitemap(body: bytes) -> bool:
    """Whether an (uncompressed) XML body is a sitemap or sitemap index, not a feed."""
    head = body[:4096].lower()
    return any(root in head for root in _SITEMAP_ROOTS)


def feed_entries(body: bytes, base_url: str) -> list[str]:
    """The entry links of an RSS or Atom feed, in feed order, absolute, without duplicates."""
    # A stream, never bytes or str: feedparser opens a str (and bytes) as a file path or URL.
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-location": base_url},
        resolve_relative_uris=False,
        sanitize_html=False,
    )
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise SourceError(f"{base_url} is not an RSS or Atom feed"
                          + (f" ({problem})" if problem else ""))
    links = []
    for entry in parsed.entries:
        link = entry.get("link") or ""
        if not link and entry.get("guidislink"):
            link = entry.get("id") or ""
        if link:
            links.append(urljoin(base_url, link.strip()))
    return _unique(iter(links))


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def read_sitemap(body: bytes, base_url: str) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) of a sitemap (<urlset>, Google News ones included) or a
    sitemap index (<sitemapindex>)."""
    pages: list[str] = []
    children: list[str] = []
    root_seen = ""
    try:
        # Expat expands no external entity and limits entity amplification ("billion laughs");
        # the body was capped when it was read. iterparse keeps memory flat on 50 MB sitemaps.
        for _, element in ET.iterparse(io.BytesIO(body), events=("end",)):  # noqa: S314 -- see above
            name = _local(element.tag)
            if name in ("url", "sitemap"):
                loc = next((c.text for c in element if _local(c.tag) == "loc" and c.text), None)
                if loc:
                    (pages if name == "url" else children).append(urljoin(base_url, loc.strip()))
                element.clear()
            elif name in ("urlset", "sitemapindex"):
                break
            root_seen = name
        else:
            raise SourceError(f"{base_url} is not a sitemap (root <{root_seen}>)")
    except ET.ParseError as exc:
        raise SourceError(f"{base_url} is not well-formed XML ({exc})") from exc
    return _unique(iter(pages)), _unique(iter(children))


async def expand_feed(fetch: Fetch, url: str, cap: int) -> list[str]:
    """The article URLs an RSS/Atom feed lists."""
    page = await fetch(url)
    return feed_entries(gunzipped(page.raw, cap), page.final_url)


async def expand_sitemap(fetch: Fetch, url: str, cap: int, max_files: int) -> list[str]:
    """The article URLs of a sitemap, following a sitemap index to its sitemaps (at most
    `max_files` files in all), without duplicates."""
    queue = [url]
    visited: set[str] = set()
    found: dict[str, None] = {}
    while queue and len(visited) < max_files:
        current = queue.pop(0)
        if current in visited:
            continue
        visited.add(current)
        page = await fetch(current)
        pages, children = read_sitemap(gunzipped(page.raw, cap), page.final_url)
        found.update(dict.fromkeys(pages))
        queue.extend(c for c in children if c not in visited)
    if queue:
        logger.warning("sitemap %s: read %d files, left %d more (NEWSFLOW_MAX_SITEMAPS)",
                       url, len(visited), len(queue))
    return list(found)


async def expand(fetch: Fetch, url: str, cap: int, max_files: int) -> list[str]:
    """The article URLs of a feed or a sitemap, whichever `url` turns out to be."""
    page = await fetch(url)
    body = gunzipped(page.raw, cap)
    if not is_sitemap(body):
        return feed_entries(body, page.final_url)

    async def first_then_fetch(u: str) -> FetchedPage:
        return page if u == url else await fetch(u)

    return await expand_sitemap(first_then_fetch, url, cap, max_files)
