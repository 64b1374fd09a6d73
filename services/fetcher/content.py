"""Reading a fetched body: bounded decompression, HTML sniffing and charset decoding."""

import codecs
import re
import zlib

import charset_normalizer

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

XML_TYPES = frozenset(
    {
        "application/xml",
        "text/xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/x-rss+xml",
        # Sitemaps are often served as gzipped files (sitemap.xml.gz), not Content-Encoded.
        "application/gzip",
        "application/x-gzip",
    }
)
"""Types a feed or sitemap may come with."""

GZIP_MAGIC = b"\x1f\x8b"

# The root elements of the XML newsflow reads: feeds (RSS, Atom, RDF) and sitemaps.
_XML_STARTS = (b"<?xml", b"<rss", b"<feed", b"<rdf:rdf", b"<urlset", b"<sitemapindex")

# Types that say nothing about the content, so the body is sniffed (WHATWG MIME sniffing does the
# same). text/plain is not among them: browsers never render it as HTML either.
SNIFFED_TYPES = frozenset(
    {"", "application/octet-stream", "application/unknown", "unknown/unknown"}
)

SNIFF_BYTES = 1024
"""How much of the body sniffing needs (the WHATWG algorithm reads at most 1445 bytes)."""

ACCEPT_ENCODING = "gzip, deflate"
"""The encodings `Decompressor` reads; the fetcher advertises only these."""

# Where a <meta charset> or http-equiv declaration is looked for. The HTML standard pre-scans
# 1024 bytes; real pages often declare it later, after large inline scripts.
_META_SCAN_BYTES = 8192
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:+-]+)""", re.I)

# The WHATWG sniffing patterns for HTML: one of these tags, then a space or ">".
_HTML_STARTS = tuple(
    tag.encode()
    for tag in (
        "<!doctype html",
        "<html",
        "<head",
        "<script",
        "<iframe",
        "<h1",
        "<div",
        "<font",
        "<table",
        "<a",
        "<style",
        "<title",
        "<b",
        "<body",
        "<br",
        "<p",
        "<!--",
    )
)
_TAG_ENDS = frozenset({b" ", b"\t", b"\n", b"\x0c", b"\r", b">"})

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _codec(label: str) -> str | None:
    """The Python codec name for a charset label, or None if Python has no such text codec."""
    try:
        info = codecs.lookup(label.strip().strip("\"'"))
    except LookupError:
        return None
    # codecs.lookup also knows bytes-to-bytes codecs ("base64", "zip"), which cannot decode text.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


# Browsers decode these labels as a superset (the WHATWG Encoding standard); pages declared
# "iso-8859-1" routinely contain windows-1252 quotes and dashes in 0x80-0x9F.
_SUPERSETS = {
    _codec(label): superset
    for label, superset in (
        ("ascii", "cp1252"),
        ("iso-8859-1", "cp1252"),
        ("iso-8859-9", "cp1254"),
        ("iso-8859-11", "cp874"),
        ("gb2312", "gb18030"),
        ("gbk", "gb18030"),
        ("euc-kr", "cp949"),
    )
}


def parse_content_type(header: str | None) -> tuple[str, str | None]:
    """The media type (lower case, "" if absent) and the charset parameter of a Content-Type."""
    if not header:
        return "", None
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media_type.strip().lower(), charset


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes of a body with no useful Content-Type are HTML."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", "ignore").encode("utf-8", "ignore")
    head = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\n\x0c\r").lower()
    return any(
        head.startswith(start) and head[len(start) : len(start) + 1] in _TAG_ENDS
        for start in _HTML_STARTS
    )


def looks_like_xml(head: bytes) -> bool:
    """Whether the first bytes of a body with no useful Content-Type are a feed, a sitemap or
    other XML (or a gzip file, as sitemaps often are)."""
    if head.startswith(GZIP_MAGIC):
        return True
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", "ignore").encode("utf-8", "ignore")
    head = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\n\x0c\r").lower()
    while head.startswith(b"<!--"):
        head = head.partition(b"-->")[2].lstrip(b" \t\n\x0c\r")
    return head.startswith(_XML_STARTS)


def looks_like_url_list(head: bytes) -> bool:
    """Whether the first bytes of a body are a plain-text sitemap: an http(s) URL a line."""
    head = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\n\x0c\r").lower()
    return head.startswith((b"http://", b"https://"))


def looks_like_source(head: bytes) -> bool:
    """Whether the first bytes of a body are a feed or sitemap: XML, gzip, or a URL list."""
    return looks_like_xml(head) or looks_like_url_list(head)


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """The text of an HTML body and the codec used: a byte-order mark, else the Content-Type
    charset, else a <meta> declaration, else detection. Undecodable bytes become U+FFFD."""
    encoding = (
        next((name for bom, name in _BOMS if body.startswith(bom)), None)
        or (_codec(header_charset) if header_charset else None)
        or _meta_charset(body)
        or _detected_charset(body)
        or "utf-8"
    )
    encoding = _SUPERSETS.get(encoding, encoding)
    try:
        return body.decode(encoding, errors="replace"), encoding
    except (LookupError, ValueError):
        # A codec that still fails with errors="replace" (none of the standard ones do).
        return body.decode("utf-8", errors="replace"), "utf-8"


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body, 0, _META_SCAN_BYTES)
    if match is None:
        return None
    codec = _codec(match.group(1).decode("ascii"))
    # A page that can declare its charset in ASCII bytes is not UTF-16, whatever it says; browsers
    # read it as UTF-8 (HTML standard, "prescan").
    if codec is not None and codec.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return codec


def _detected_charset(body: bytes) -> str | None:
    best = charset_normalizer.from_bytes(body).best()
    return _codec(best.encoding) if best is not None else None


class Decompressor:
    """Undoes one Content-Encoding, producing at most a given number of bytes per call, so a
    small compressed chunk cannot expand into gigabytes in memory (a "gzip bomb")."""

    def __init__(self, content_encoding: str) -> None:
        """Raises ValueError for an encoding it cannot read."""
        self.encoding = content_encoding.strip().lower()
        self._started = False
        self._zlib: zlib._Decompress | None
        if self.encoding in ("", "identity"):
            self._zlib = None
        elif self.encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")

    def decompress(self, data: bytes, max_length: int) -> bytes:
        """The decoded bytes of `data`; when there would be more than `max_length`, returns just
        `max_length` of them and drops the rest (the caller stops reading). Raises zlib.error on a
        corrupt stream."""
        if self._zlib is None:
            return data
        try:
            return self._zlib.decompress(data, max_length)
        except zlib.error:
            # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate (httpx and
            # browsers accept both); only the start of the stream can tell.
            if self.encoding != "deflate" or self._started:
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(data, max_length)
        finally:
            self._started = True

    def flush(self) -> bytes:
        """What is left once the whole body has been fed."""
        return self._zlib.flush() if self._zlib is not None else b""
