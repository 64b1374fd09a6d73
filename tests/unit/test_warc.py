"""`publish --warc`: which records of a WARC file become articles (a WARC the test writes)."""

import gzip
from io import BytesIO
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from services.cli.warc import WarcError, WarcTally, warc_articles

PAGE = ("<!DOCTYPE html><html><head><title>Café</title></head>"
        "<body><p>Crème brûlée</p></body></html>")


def response(writer: WARCWriter, url: str, body: bytes, status: str = "200 OK",
             headers: list[tuple[str, str]] | None = None) -> None:
    http = StatusAndHeaders(status, headers if headers is not None
                            else [("Content-Type", "text/html; charset=utf-8")],
                            protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body),
                                                  http_headers=http))


def write_warc(path: Path, gzipped: bool = True) -> None:
    with path.open("wb") as out:
        writer = WARCWriter(out, gzip=gzipped)
        writer.write_record(writer.create_warcinfo_record("test.warc.gz", {"software": "test"}))
        request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")],
                                   is_http_request=True)
        writer.write_record(writer.create_warc_record(
            "https://example.com/a", "request", payload=BytesIO(b""), http_headers=request))
        response(writer, "https://example.com/a", PAGE.encode())
        # Latin-1, as the header says; and a body sent gzip-encoded.
        response(writer, "https://example.com/b", PAGE.encode("latin-1"),
                 headers=[("Content-Type", "text/html; charset=ISO-8859-1")])
        response(writer, "https://example.com/c", gzip.compress(PAGE.encode()),
                 headers=[("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
        # No Content-Type: HTML by its first bytes.
        response(writer, "https://example.com/d", PAGE.encode(), headers=[])
        response(writer, "https://example.com/gone", b"<html>gone</html>", status="404 Not Found")
        response(writer, "https://example.com/logo.png", b"\x89PNG\r\n",
                 headers=[("Content-Type", "image/png")])
        response(writer, "https://example.com/huge", b"<html>" + b"x" * 5000 + b"</html>")
        response(writer, "ftp://example.com/e", PAGE.encode())


@pytest.mark.parametrize("gzipped", [True, False])
def test_the_html_responses_become_articles(tmp_path: Path, gzipped: bool) -> None:
    path = tmp_path / "crawl.warc.gz"
    write_warc(path, gzipped)
    tally = WarcTally()
    articles = list(warc_articles(path, tally, max_bytes=4000))
    assert [a.url for a in articles] == [f"https://example.com/{p}" for p in "abcd"]
    assert all(a.html == PAGE and a.source == "warc" for a in articles)
    assert tally.pages == 4
    assert tally.skipped == {"status 404": 1, "not HTML": 1, "over the size cap": 1,
                             "not an HTTP response": 1}


@pytest.mark.parametrize("content", [b"these are not WARC records\n" * 10,
                                     gzip.compress(b"<html>a page, not a WARC</html>"), b""])
def test_a_file_that_is_no_warc_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.warc"
    path.write_bytes(content)
    with pytest.raises(WarcError, match="not a readable WARC file"):
        list(warc_articles(path, WarcTally()))
