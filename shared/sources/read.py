"""Reading one feed (RSS, Atom), sitemap (XML, Google News, index, plain text) or robots.txt
into the URLs it lists: streamed, capped, in the charset the server named."""

import calendar
import codecs
import email.utils
import html
import io
import re
import xml.sax
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import feedparser
from lxml import etree

from shared.errors import PermanentError
from shared.messages import http_url

GZIP_MAGIC = b"\x1f\x8b"

SourceKind = Literal["sitemap", "text", "feed"]

_SITEMAP_ROOTS = ("urlset", "sitemapindex")
_XML_DECLARED_ENCODING = re.compile(rb"^<\?xml[^>]*\bencoding\s*=", re.I)
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")


class SourceError(PermanentError):
    """A feed or sitemap that cannot be read."""


@dataclass
class Listing:
    """What one file lists, and what of it was left out and why."""

    pages: list[str] = field(default_factory=list)
    """Article URLs, absolute, in the file's order."""
    children: list[str] = field(default_factory=list)
    """Sitemaps it points to (a sitemap index, robots.txt)."""
    entries: int = 0
    """Entries (items, <url>s, lines) read, whether kept or not."""
    skipped: int = 0
    """Entries without a usable link (none, or not an http(s) URL): never guessed."""
    older: int = 0
    """Entries (and index children) last changed before `since`."""
    capped: bool = False
    """Reading stopped at the cap on entries; the rest of the file was not read."""
    warnings: list[str] = field(default_factory=list)


def gunzipped(body: bytes, cap: int) -> bytes:
    """The body, uncompressed if it is a gzip file (sitemap.xml.gz), within `cap` bytes."""
    if not body.startswith(GZIP_MAGIC):
        return body
    # At most cap + 1 bytes come out, whatever the ratio: a small "gzip bomb" stays small.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise SourceError(f"corrupt gzip file ({exc})") from exc
    if len(data) > cap:
        raise SourceError(f"gzip file over the {cap}-byte cap once uncompressed")
    return data


def _head_text(body: bytes) -> bytes:
    """The first bytes of a body as lower-case ASCII-compatible bytes (UTF-16 re-encoded)."""
    head = body[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", "ignore").encode("utf-8", "ignore")
    return head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n\x0c").lower()


def kind_of(body: bytes) -> SourceKind:
    """What an (uncompressed) body is: an XML sitemap or index, a plain-text sitemap (one URL a
    line), or else a feed (feedparser says if it is not one either)."""
    head = _head_text(body)
    if head.startswith(b"<"):
        return "sitemap" if any(f"<{r}".encode() in head for r in _SITEMAP_ROOTS) else "feed"
    if head.startswith((b"http://", b"https://")):
        return "text"
    return "feed"


def _usable(url: str) -> bool:
    """Whether an article could be submitted with this URL (one that could not would fail the
    whole command's submission)."""
    try:
        http_url(url)
    except ValueError:
        return False
    return True


def _date(text: str | None) -> datetime | None:
    """A W3C datetime ("2024-05-01", "2024-05-01T12:00:00+02:00", "…Z") as UTC, or None."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- feeds ---------------------------------------------------------------------------------


def _looks_like_html(body: bytes) -> bool:
    return _head_text(body).startswith(_HTML_STARTS)


def read_feed(
    body: bytes, base_url: str, *, content_type: str = "", charset: str | None = None,
    since: datetime | None = None, limit: int = 50_000,
) -> Listing:
    """The entry links of an RSS or Atom feed, in feed order and absolute: streamed when the
    feed is well-formed XML, else (or when it is no RSS or Atom) through feedparser, which reads
    broken and exotic feeds too."""
    if _looks_like_html(body):
        sent = f"it was served as {content_type}" if content_type else "it came untyped"
        raise SourceError(f"{base_url} is not an RSS or Atom feed: {sent}, but the body is "
                          "an HTML page")
    streamed = _stream_feed(body, base_url, charset, since, limit)
    if streamed is not None:
        return streamed
    return _parse_feed(body, base_url, content_type, charset, since, limit)


_FEED_ROOTS = frozenset({"rss", "feed", "RDF"})
_FEED_ENTRY_TAGS = ("{*}item", "{*}entry")
_ATOM_NS = ("http://www.w3.org/2005/Atom", "http://purl.org/atom/ns#")
_HTML_TYPES = frozenset({"", "text/html", "application/xhtml+xml"})
_ENTRY_DATES = frozenset({"pubDate", "published", "issued", "date", "updated", "modified"})


def _stream_feed(
    body: bytes, base_url: str, charset: str | None, since: datetime | None, limit: int
) -> Listing | None:
    """A well-formed RSS, RDF or Atom feed read entry by entry, each cleared once read (memory
    stays flat, unlike feedparser's, which builds every entry); None when it is not one."""
    listing = Listing()
    events = _xml_events(body, _override_encoding(body, charset), _FEED_ENTRY_TAGS)
    root = ""
    try:
        for _, element in events:
            if not root:
                root = _local(element.getroottree().getroot().tag)
                if root not in _FEED_ROOTS:
                    return None
            if len(listing.pages) >= limit:
                listing.capped = True
                break
            listing.entries += 1
            link = _stream_link(element, base_url)
            when = _stream_date(element) if since is not None and link else None
            if link is None:
                listing.skipped += 1
            elif since is not None and when is not None and when < since:
                listing.older += 1
            else:
                listing.pages.append(link)
            element.clear(keep_tail=True)
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError:
        return None  # feedparser's lenient parser reads what it can, and says what is wrong
    root = root or _local(getattr(getattr(events, "root", None), "tag", ""))
    return listing if root in _FEED_ROOTS else None


def _resolved(element: etree._Element, href: str, base_url: str) -> str | None:
    # xml:base (on the entry, the feed…) first, then the feed's own URL.
    url = urljoin(urljoin(base_url, element.base or ""), href.strip())
    return url if _usable(url) else None


def _stream_link(entry: etree._Element, base_url: str) -> str | None:
    """An entry's link as feedparser picks it: the last RSS <link> or alternate HTML Atom link,
    else a permalink guid or an id that is a whole http(s) URL (never joined to anything)."""
    link: etree._Element | None = None
    href = ""
    ident = None
    for child in entry:
        tag = child.tag if isinstance(child.tag, str) else ""
        name, ns = _local(tag), tag[1:].partition("}")[0] if tag.startswith("{") else ""
        if name == "link" and (child.get("href") is not None or ns in _ATOM_NS):
            kind = (child.get("type") or "").split(";")[0].strip().lower()
            if (child.get("rel", "alternate") == "alternate" and child.get("href")
                    and kind in _HTML_TYPES):
                link, href = child, child.get("href") or ""
        elif name == "link":
            # Even an empty one: feedparser then takes no guid for the link either.
            link, href = child, _text(child)
        elif ident is None and ((name == "id" and ns in _ATOM_NS)
                                or (name == "guid" and child.get("isPermaLink", "true") == "true")):
            ident = _text(child)
    if link is not None:
        return _resolved(link, href, base_url) if href.strip() else None
    if ident and _usable(ident) and not any(c.isspace() for c in ident):
        return ident
    return None


def _stream_date(entry: etree._Element) -> datetime | None:
    """When the entry last changed: the latest of its dates (published, updated…)."""
    dates = [when for child in entry
             if _local(child.tag) in _ENTRY_DATES and (when := _any_date(child.text))]
    return max(dates, default=None)


def _any_date(text: str | None) -> datetime | None:
    """An RFC 822 date (RSS) or a W3C one (Atom, Dublin Core), as UTC; None if neither."""
    if not text:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return _date(text)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- feedparser, for feeds that are not well-formed XML ------------------------------------


def _entry_link(entry: feedparser.FeedParserDict, base_url: str) -> str | None:
    link = (entry.get("link") or "").strip()
    if not link:
        return None
    if link not in {(found.get("href") or "").strip() for found in entry.get("links") or []}:
        # Not from a <link>: feedparser took the entry's id (an RSS guid, an Atom id). An id is
        # a name, not an address, unless it is a whole http(s) URL by itself; joined to the
        # feed's URL it would invent one ("…/Correct Value").
        return link if _usable(link) and not any(c.isspace() for c in link) else None
    url = urljoin(base_url, link)
    return url if _usable(url) else None


def _entry_date(entry: feedparser.FeedParserDict) -> datetime | None:
    """When the entry last changed: the later of its published and updated dates."""
    # dict.get: FeedParserDict.get maps a missing updated_parsed to published_parsed, warning.
    dates = [datetime.fromtimestamp(calendar.timegm(parsed), UTC)
             for key in ("published_parsed", "updated_parsed") if (parsed := dict.get(entry, key))]
    return max(dates, default=None)


def _parse_feed(
    body: bytes, base_url: str, content_type: str, charset: str | None,
    since: datetime | None, limit: int,
) -> Listing:
    headers = {}
    # The same rule as the streamed reader's: the HTTP charset when the file declares none.
    if charset := _override_encoding(body, charset):
        headers["content-type"] = f"{content_type or 'application/xml'}; charset={charset}"
    # A stream, never bytes or str: feedparser opens a str (and bytes) as a file path or URL.
    # No content-location: a relative id must stay relative, so _entry_link can refuse it.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers,
                              resolve_relative_uris=False, sanitize_html=False)
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise SourceError(f"{base_url} is not an RSS or Atom feed"
                          + (f" ({problem})" if problem else "")
                          + (f", served as {content_type}" if content_type else ""))
    listing = Listing()
    if parsed.get("bozo") and (problem := parsed.get("bozo_exception")):
        what = ("is cut short or malformed" if isinstance(problem, xml.sax.SAXException)
                else "was read leniently")
        listing.warnings.append(f"{base_url} {what} ({problem}); kept the entries feedparser "
                                "could read")
    for entry in parsed.entries:
        if len(listing.pages) >= limit:
            listing.capped = True
            break
        listing.entries += 1
        link = _entry_link(entry, base_url)
        if link is None:
            listing.skipped += 1
            continue
        when = _entry_date(entry)
        if since is not None and when is not None and when < since:
            listing.older += 1
            continue
        listing.pages.append(link)
    return listing


# --- XML sitemaps --------------------------------------------------------------------------


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _text(element: etree._Element) -> str:
    """An element's text, stripped, with the entity references libxml2 left unexpanded (those of
    a DTD it does not load: RSS 0.91's &eacute;…) read as HTML's named characters."""
    parts = [element.text or ""]
    for child in element:
        if isinstance(child, etree._Entity):
            parts.append(html.unescape(child.text or ""))
        parts.append(child.tail or "")
    return "".join(parts).strip()


def _override_encoding(body: bytes, charset: str | None) -> str | None:
    """The HTTP charset, when the file itself says nothing (no byte-order mark, no encoding in
    its XML declaration). A declared encoding wins: servers label UTF-8 sitemaps with a default
    "text/xml; charset=iso-8859-1" far more often than a file declares a wrong encoding."""
    if not charset or body.startswith(_BOMS) or _XML_DECLARED_ENCODING.match(body[:200]):
        return None
    return charset.strip().strip("\"'") or None


_ENTRY_TAGS = ("{*}url", "{*}sitemap", "{*}urlset", "{*}sitemapindex")


def _xml_events(body: bytes, encoding: str | None, tags: tuple[str, ...]) -> "etree.iterparse":
    # libxml2 with no network, no entity expansion and its default size limits (no
    # "billion laughs", no external entities). Only the entries' end events reach Python, and
    # each entry is cleared once read, so memory stays flat and time low on 50 MB files.
    options = {"events": ("end",), "tag": tags, "resolve_entities": False,
               "no_network": True, "load_dtd": False, "huge_tree": False,
               "remove_comments": True, "remove_pis": True}
    try:
        return etree.iterparse(io.BytesIO(body), encoding=encoding, **options)
    except LookupError:
        pass
    # A label libxml2's iconv does not know but Python does ("euc_jp", "cp1251"…): decoded
    # here instead.
    try:
        text = body.decode(codecs.lookup(encoding or "utf-8").name, errors="replace")
    except LookupError:
        return etree.iterparse(io.BytesIO(body), **options)
    return etree.iterparse(io.BytesIO(text.encode("utf-8")), encoding="utf-8", **options)


def read_sitemap(
    body: bytes, base_url: str, *, charset: str | None = None, since: datetime | None = None,
    limit: int = 50_000,
) -> Listing:
    """The page URLs of a sitemap (<urlset>, Google News ones included) or the sitemap URLs of a
    sitemap index (<sitemapindex>), streamed. A file cut short gives the URLs read before the
    break, with a warning; `since` drops entries whose lastmod (or news:publication_date) is
    older."""
    listing = Listing()
    events = _xml_events(body, _override_encoding(body, charset), _ENTRY_TAGS)
    root = ""
    try:
        for _, element in events:
            if not root:
                root = _local(element.getroottree().getroot().tag)
                if root not in _SITEMAP_ROOTS:
                    break
            name = _local(element.tag)
            if name in _SITEMAP_ROOTS:
                break
            if name == "url" and len(listing.pages) >= limit:
                listing.capped = True
                break
            _take(element, name == "url", base_url, since, listing)
            element.clear(keep_tail=True)
            while element.getprevious() is not None:
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        if not root:
            raise SourceError(f"{base_url} is not well-formed XML ({exc})") from exc
        listing.warnings.append(
            f"{base_url} is cut short or malformed ({exc}); kept the {len(listing.pages)} URLs "
            f"and {len(listing.children)} sitemaps read before the break")
    root = root or _local(getattr(getattr(events, "root", None), "tag", ""))
    if root not in _SITEMAP_ROOTS:
        raise SourceError(f"{base_url} is not a sitemap (root <{root}>)")
    return listing


def _take(element: etree._Element, page: bool, base_url: str, since: datetime | None,
          listing: Listing) -> None:
    """Add one <url> (a page) or <sitemap> (of an index) entry to `listing`."""
    listing.entries += 1
    loc = ""
    dates = []
    for child in element:
        tag = _local(child.tag)
        if tag == "loc":
            loc = loc or _text(child)
        elif since is None:
            continue
        elif tag == "lastmod" and (when := _date(child.text)):
            dates.append(when)
        elif tag == "news":
            dates += [when for found in child.iter("{*}publication_date")
                      if (when := _date(found.text))]
    url = loc if loc.startswith(("http://", "https://")) else urljoin(base_url, loc)
    if not loc or not _usable(url):
        listing.skipped += 1
    elif since is not None and dates and max(dates) < since:
        listing.older += 1
    else:
        (listing.pages if page else listing.children).append(url)


# --- plain-text sitemaps and robots.txt -------------------------------------------------------


def read_text_sitemap(
    body: bytes, base_url: str, *, charset: str | None = None, limit: int = 50_000
) -> Listing:
    """The URLs of a plain-text sitemap: one whole http(s) URL a line (blank lines and lines
    starting with # are passed over; anything else is counted as skipped)."""
    listing = Listing()
    encoding = "utf-8"  # the sitemap protocol's, unless the server said otherwise
    if charset:
        try:
            encoding = codecs.lookup(charset.strip().strip("\"'")).name
        except LookupError:
            listing.warnings.append(f"{base_url}: unknown charset {charset!r}, read as UTF-8")
    # Line by line from the bytes: a 50 MB file is never held twice, decoded.
    for raw in io.BytesIO(body.removeprefix(codecs.BOM_UTF8)):
        line = raw.decode(encoding, errors="replace").strip()
        if not line or line.startswith("#"):
            continue
        if len(listing.pages) >= limit:
            listing.capped = True
            break
        listing.entries += 1
        if _usable(line) and "\ufffd" not in line and not any(c.isspace() for c in line):
            listing.pages.append(line)
        else:
            listing.skipped += 1
    return listing


def robots_sitemaps(body: bytes, base_url: str) -> list[str]:
    """The sitemaps a robots.txt names in its `Sitemap:` lines, absolute."""
    parser = RobotFileParser()
    parser.parse(body.decode("utf-8", errors="replace").splitlines())
    found = (urljoin(base_url, url.strip()) for url in parser.site_maps() or [])
    return list(dict.fromkeys(url for url in found if _usable(url)))


def read_source(
    body: bytes, base_url: str, *, content_type: str = "", charset: str | None = None,
    since: datetime | None = None, limit: int = 50_000,
) -> Listing:
    """One (uncompressed) feed or sitemap of any kind, told apart by its content."""
    kind = kind_of(body)
    if kind == "sitemap":
        return read_sitemap(body, base_url, charset=charset, since=since, limit=limit)
    if kind == "text":
        return read_text_sitemap(body, base_url, charset=charset, limit=limit)
    return read_feed(body, base_url, content_type=content_type, charset=charset, since=since,
                     limit=limit)
