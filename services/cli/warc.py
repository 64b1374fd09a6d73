"""`newsflow publish --warc FILE`: the HTML pages of a WARC file (news archives, Common Crawl's
news crawl) submitted as articles, page and URL together, so nothing is fetched again."""

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from services.fetcher.content import decode_html, looks_like_html, parse_content_type
from shared.messages import MAX_HTML_BYTES, ArticleSubmitted

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# How much of a body tells whether it is HTML when the response states no type.
_SNIFF_BYTES = 1024


class WarcError(Exception):
    """The file is not a WARC (or ARC) file that can be read."""


@dataclass
class WarcTally:
    """What reading a WARC file found: pages submitted, and records passed over by reason."""

    pages: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def warc_articles(path: Path, tally: WarcTally, refresh: bool = False,
                  max_bytes: int = MAX_HTML_BYTES) -> Iterator[ArticleSubmitted]:
    """Each HTML page the WARC file at `path` holds (responses with status 200), in file order.

    Streams the file (gzipped per record or not): memory holds one page at a time. Requests,
    metadata, other statuses and other media types are counted in `tally`, not submitted.
    Raises WarcError when the file cannot be read as a WARC.
    """
    try:
        with path.open("rb") as stream:
            _check_format(stream, path)
            yield from _read(stream, tally, refresh, max_bytes)
    except ArchiveLoadFailed as exc:
        raise WarcError(f"{path}: not a readable WARC file ({exc})") from None


def _check_format(stream: BinaryIO, path: Path) -> None:
    # warcio reads anything, warning on stderr and finding no record: say what is wrong instead.
    head = stream.read(_SNIFF_BYTES)
    stream.seek(0)
    if head.startswith(b"\x1f\x8b"):  # gzipped records
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
    if not head.startswith((b"WARC/", b"filedesc://")):
        raise WarcError(f"{path}: not a readable WARC file (it does not open with a WARC record)")


def _read(stream: BinaryIO, tally: WarcTally, refresh: bool,
          max_bytes: int) -> Iterator[ArticleSubmitted]:
    for record in ArchiveIterator(stream):
        if record.rec_type != "response":
            continue
        url = record.rec_headers.get_header("WARC-Target-URI")
        http = record.http_headers
        if http is None or not url:
            tally.skip("not an HTTP response")
            continue
        if http.get_statuscode() != "200":
            tally.skip(f"status {http.get_statuscode()}")
            continue
        media_type, charset = parse_content_type(http.get_header("Content-Type"))
        # content_stream() undoes the transfer and content encodings (chunked, gzip).
        body = record.content_stream().read(max_bytes + 1)
        if len(body) > max_bytes:
            tally.skip("over the size cap")
            continue
        if media_type not in _HTML_TYPES and not (
                not media_type and looks_like_html(body[:_SNIFF_BYTES])):
            tally.skip("not HTML")
            continue
        html, _ = decode_html(body, charset)
        try:
            article = ArticleSubmitted(url=url, html=html, refresh=refresh, source="warc")
        except ValueError:
            tally.skip("not an http(s) URL")
            continue
        tally.pages += 1
        yield article
