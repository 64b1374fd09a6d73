"""Feeds, sitemaps (indexes followed) and sites (their robots.txt `Sitemap:` lines) expanded into
the article URLs they list: once each by article id, within caps, keeping every part that reads
when another fails. The one expansion `publish --feed/--sitemap/--site` and the scheduler use."""

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from shared.errors import NewsflowError, TransientError
from shared.messages import canonical_url
from shared.settings import Settings
from shared.sources.read import Listing, gunzipped, read_source, robots_sitemaps

logger = logging.getLogger("newsflow.sources")

_READ_IN_THREAD_BYTES = 256 * 1024
"""A file this large is read off the event loop (a 50 MB sitemap takes about a second)."""

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.I)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def since_cutoff(spec: str, now: float | None = None) -> datetime | None:
    """The time `spec` names: a date ("2025-01-31", midnight UTC), a date and time (ISO 8601,
    UTC unless it says), or an age before `now` ("36h", "2d", "1w"); None for "". Raises
    ValueError for anything else."""
    if not spec.strip():
        return None
    if match := _AGE.match(spec):
        seconds = int(match.group(1)) * _AGE_UNITS[match.group(2).lower()]
        return datetime.fromtimestamp(time.time() if now is None else now, UTC) - timedelta(
            seconds=seconds)
    try:
        when = datetime.fromisoformat(spec.strip())
    except ValueError:
        raise ValueError(f"{spec!r} is not a date (2025-01-31), a date and time, or an age "
                         "(36h, 2d, 1w)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class Document(Protocol):
    """A fetched feed, sitemap or robots.txt (the fetcher's FetchedPage is one)."""

    @property
    def final_url(self) -> str: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def content_type(self) -> str: ...
    @property
    def charset(self) -> str | None: ...


class Fetch(Protocol):
    """Fetches a feed or sitemap (or, with `robots`, a robots.txt) through the guarded, polite
    fetch; raises a NewsflowError (transient or permanent) when it cannot."""

    async def __call__(self, url: str, *, robots: bool = False) -> Document: ...


@dataclass(frozen=True)
class Limits:
    """How much one expansion may read."""

    max_bytes: int
    """A file's size, uncompressed (NEWSFLOW_MAX_SOURCE_BYTES)."""
    max_files: int
    """Files read for one source: a sitemap index and its sitemaps (NEWSFLOW_MAX_SITEMAPS)."""
    max_entries: int
    """URLs kept from one file and from the whole expansion (NEWSFLOW_MAX_ENTRIES_PER_SOURCE)."""
    since: datetime | None = None
    """Entries last changed (lastmod, news:publication_date, a feed entry's date) before this
    are left out; entries without a date are kept."""

    @classmethod
    def of(cls, settings: Settings, since: datetime | None = None) -> "Limits":
        return cls(settings.max_source_bytes, settings.max_sitemaps,
                   settings.max_entries_per_source, since)


@dataclass(frozen=True)
class Failure:
    """A file that could not be fetched or read; the rest of the expansion went on without it."""

    url: str
    source: str
    """The feed, sitemap or site it was read for."""
    reason: str
    transient: bool
    """It may work later (a timeout, a 5xx, a busy host)."""


@dataclass
class Expansion:
    """The article URLs found, and everything left out on the way, with why."""

    urls: list[str] = field(default_factory=list)
    """Once each by article id (the canonical URL), in the order found."""
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    read: list[str] = field(default_factory=list)
    """The files read without failing."""
    entries: int = 0
    skipped: int = 0
    """Entries without a usable link."""
    older: int = 0
    """Entries (and sitemaps of an index) older than `since`."""
    duplicates: int = 0
    """Entries naming an article already found (by article id)."""
    deferred: list[str] = field(default_factory=list)
    """Files not fetched this time: still backing off after failing (the scheduler's)."""
    capped: bool = False
    """Stopped at max_entries."""

    def summary(self) -> str:
        """One line: what was read and what was left out."""
        parts = [f"{len(self.urls)} URLs from {self.files} files ({self.entries} entries"]
        for count, what in ((self.duplicates, "duplicates"), (self.skipped, "without a link"),
                            (self.older, "older than --since"), (len(self.failures), "failed"),
                            (len(self.deferred), "deferred")):
            if count:
                parts.append(f"{count} {what}")
        return ", ".join(parts) + ")"


def same_page(url: str) -> str:
    """What two links to one article share within a command: the article id's canonical URL,
    and beside it neither the scheme, a leading `www.` nor a trailing slash count. Only the
    first link found is submitted; ids themselves stay as they are (stored articles keep theirs).
    """
    parts = urlsplit(canonical_url(url))
    host = parts.netloc.removeprefix("www.")
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("", host, path, parts.query, ""))


def robots_url(site: str) -> str:
    """The robots.txt of the site `site` (any URL on it, or a bare host name: https)."""
    site = site.strip()
    parts = urlsplit(site if "://" in site else f"https://{site}")
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


async def expand(
    fetch: Fetch,
    sources: Sequence[str],
    limits: Limits,
    *,
    sites: Sequence[str] = (),
    fetched: Mapping[str, Document] | None = None,
    deferred: Mapping[str, float] | None = None,
) -> Expansion:
    """The article URLs of `sources` (feeds, sitemaps, sitemap indexes, plain-text sitemaps:
    each told by its content) and of `sites` (the sitemaps their robots.txt names, else
    /sitemap.xml). A file that fails is recorded in `failures` and the others are still read.
    `fetched` holds files already fetched (by URL); `deferred` maps files to the time before
    which they are not fetched again (Unix seconds)."""
    out = Expansion()
    found: dict[str, str] = {}
    visited: set[str] = set()
    roots = [(url, url) for url in sources]
    for site in sites:
        roots += [(sitemap, site) for sitemap in await _site_sitemaps(fetch, site, out)]
    for root, source in roots:
        if out.capped:
            break
        await _expand_one(fetch, root, source, limits, out, found, visited, fetched or {},
                          deferred or {})
    out.urls = list(found.values())
    return out


async def _site_sitemaps(fetch: Fetch, site: str, out: Expansion) -> list[str]:
    """The sitemaps a site's robots.txt names; its /sitemap.xml when it names none."""
    url = robots_url(site)
    fallback = urlunsplit((*urlsplit(url)[:2], "/sitemap.xml", "", ""))
    try:
        document = await fetch(url, robots=True)
    except NewsflowError as exc:
        out.warnings.append(f"{url}: {exc}; trying {fallback}")
        return [fallback]
    out.files += 1
    sitemaps = robots_sitemaps(document.raw, document.final_url)
    if not sitemaps:
        out.warnings.append(f"{url} names no sitemap; trying {fallback}")
    return sitemaps or [fallback]


async def _expand_one(
    fetch: Fetch, root: str, source: str, limits: Limits, out: Expansion,
    found: dict[str, str], visited: set[str], fetched: Mapping[str, Document],
    deferred: Mapping[str, float],
) -> None:
    """Read `root` and, for a sitemap index, its sitemaps (breadth first, at most max_files)."""
    queue = deque([root])
    files = 0
    now = time.time()
    while queue:
        url = queue.popleft()
        if url in visited:
            continue
        if files >= limits.max_files:
            out.warnings.append(f"{source}: read {files} files, left {len(queue) + 1} more "
                                "(NEWSFLOW_MAX_SITEMAPS)")
            return
        remaining = limits.max_entries - len(found)
        if remaining <= 0:
            out.capped = True
            out.warnings.append(f"stopped at {limits.max_entries} URLs "
                                "(NEWSFLOW_MAX_ENTRIES_PER_SOURCE); the rest was not read")
            return
        visited.add(url)
        if url != root and deferred.get(url, 0.0) > now:
            out.deferred.append(url)
            continue
        files += 1
        try:
            listing = await _read(fetch, url, fetched.get(url), limits, remaining)
        except NewsflowError as exc:
            out.failures.append(Failure(url, source, str(exc), isinstance(exc, TransientError)))
            logger.warning("source %s: %s failed: %s", source, url, exc)
            continue
        out.files += 1
        out.read.append(url)
        _merge(listing, url, limits, out, found)
        queue.extend(child for child in listing.children if child not in visited)


async def _read(
    fetch: Fetch, url: str, document: Document | None, limits: Limits, limit: int
) -> Listing:
    if document is None:
        document = await fetch(url)
    body = gunzipped(document.raw, limits.max_bytes)

    def read() -> Listing:
        return read_source(body, document.final_url, content_type=document.content_type,
                           charset=document.charset, since=limits.since, limit=limit)

    return await asyncio.to_thread(read) if len(body) > _READ_IN_THREAD_BYTES else read()


def _merge(
    listing: Listing, url: str, limits: Limits, out: Expansion, found: dict[str, str]
) -> None:
    out.entries += listing.entries
    out.skipped += listing.skipped
    out.older += listing.older
    out.capped |= listing.capped
    out.warnings += listing.warnings
    for warning in listing.warnings:
        logger.warning("%s", warning)
    if listing.entries and listing.skipped == listing.entries:
        out.warnings.append(f"{url} lists {listing.entries} entries, none with a usable link")
    if listing.capped:
        out.warnings.append(f"{url}: kept its first {len(listing.pages)} entries "
                            f"(NEWSFLOW_MAX_ENTRIES_PER_SOURCE={limits.max_entries})")
    for page in listing.pages:
        key = same_page(page)
        if key in found:
            out.duplicates += 1
        else:
            found[key] = page
