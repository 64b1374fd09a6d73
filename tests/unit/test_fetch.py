"""Page fetching: SSRF guard, redirects, size and type limits, charsets, failure classes."""

import asyncio
import codecs
import gzip
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from services.fetcher import content
from services.fetcher.content import Decompressor, decode_html, looks_like_html
from services.fetcher.fetch import (
    FetchedPage,
    FetchFailed,
    FetchRefused,
    FetchUnavailable,
    NotHtml,
    PageTooLarge,
    TooManyRedirects,
    fetch_page,
    make_client,
)
from shared.errors import PermanentError, TransientError
from shared.netguard import parse_ip, refusal_reason
from shared.settings import Settings
from tests.servers import QuietHTTPServer, reply

PUBLIC_IP = "93.184.216.34"
OTHER_PUBLIC_IP = "151.101.1.69"
HTML = b"<!DOCTYPE html><html><head><title>Hi</title></head><body><p>Hello</p></body></html>"
RUSSIAN = (
    "Правительство объявило о новых мерах поддержки малого бизнеса. "
    "Министр экономики сообщил журналистам, что программа начнёт работать в следующем месяце, "
    "а заявки можно будет подавать через портал государственных услуг."
)
SHORT = "L’été dernier, les élèves passeront davantage d’heures à l’école."
# Detection is statistical: a sentence or two can pass for windows-1250, a paragraph cannot.
FRENCH = (
    "Le gouvernement français a présenté mercredi un projet de loi très controversé sur "
    "l’éducation. Selon le ministre, les élèves des collèges et des lycées bénéficieront dès la "
    "rentrée prochaine d’un accompagnement personnalisé. « C’est une réforme nécessaire », a-t-il "
    "déclaré à la presse. Les syndicats d’enseignants, eux, dénoncent une décision prise à la "
    "hâte, sans concertation préalable."
)

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"fetch_timeout_s": 5.0, "max_redirects": 5, "max_page_bytes": 100_000}
    return Settings(**(values | overrides))


class FakeDNS:
    """A resolver from a table, recording each lookup."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.table[host]


DNS = FakeDNS(
    {"news.example": [PUBLIC_IP], "other.example": [OTHER_PUBLIC_IP], "cdn.example": [PUBLIC_IP]}
)


class Recorder:
    """A MockTransport handler serving canned responses by Host header and path."""

    def __init__(self, routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.headers['host']}{request.url.path}"
        if key not in self.routes:
            return httpx.Response(404, text="not found")
        return self.routes[key](request)


def respond(
    status: int = 200, headers: dict[str, str] | None = None, body: bytes = b""
) -> httpx.Response:
    """A response whose body is streamed, undecoded, as from a network transport.
    (httpx.Response(content=...) reads and decodes the body when it is made.)"""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def html_response(
    body: bytes = HTML, content_type: str = "text/html; charset=utf-8"
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: respond(200, {"Content-Type": content_type}, body)


def redirect(location: str, status: int = 302) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(status, headers={"Location": location})


def mock_client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def fetch(
    handler: Handler, url: str, settings: Settings | None = None, dns: FakeDNS = DNS
) -> FetchedPage:
    async with mock_client(handler) as client:
        return await fetch_page(client, url, settings or make_settings(), resolve=dns)


class Chunks(httpx.AsyncByteStream):
    """A response body that counts how many of its chunks were read."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.read += 1
            yield self.chunk


# --- success, pinning, redirects -------------------------------------------------------------


async def test_fetches_a_page_connecting_to_the_checked_address() -> None:
    recorder = Recorder({"news.example/a": html_response()})
    settings = make_settings(user_agent="newsflow-test/1")
    page = await fetch(recorder, "http://news.example/a", settings)

    assert page == FetchedPage(
        url="http://news.example/a",
        final_url="http://news.example/a",
        status=200,
        content_type="text/html",
        html=HTML.decode(),
        size_bytes=len(HTML),
        elapsed_ms=page.elapsed_ms,
    )
    assert page.elapsed_ms > 0
    (request,) = recorder.requests
    # Plain http is sent to the address the guard checked, so DNS cannot change it in between.
    assert request.url.host == PUBLIC_IP
    assert request.headers["host"] == "news.example"
    assert request.headers["user-agent"] == "newsflow-test/1"
    assert request.headers["accept-encoding"] == "gzip, deflate"


async def test_keeps_a_non_default_port_in_the_host_header() -> None:
    recorder = Recorder({"news.example:8080/": html_response()})
    dns = FakeDNS({"news.example": [PUBLIC_IP]})
    page = await fetch(recorder, "http://news.example:8080/", dns=dns)
    assert page.final_url == "http://news.example:8080/"
    assert recorder.requests[0].url.port == 8080
    assert dns.lookups == [("news.example", 8080)]


async def test_https_keeps_the_host_name_for_certificate_checks() -> None:
    recorder = Recorder({"news.example/": html_response()})
    dns = FakeDNS({"news.example": [PUBLIC_IP]})
    await fetch(recorder, "https://news.example/", dns=dns)
    assert recorder.requests[0].url.host == "news.example"
    assert dns.lookups == [("news.example", 443)]


async def test_tries_the_next_checked_address_when_one_refuses_connections() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_IP:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, headers={"Content-Type": "text/html"}, content=HTML)

    dns = FakeDNS({"news.example": [PUBLIC_IP, OTHER_PUBLIC_IP]})
    page = await fetch(handler, "http://news.example/", dns=dns)
    assert page.status == 200


async def test_follows_a_redirect_chain_and_records_the_final_url() -> None:
    recorder = Recorder(
        {
            "news.example/start": redirect("/moved", 301),
            "news.example/moved": redirect("https://other.example/article?id=1", 308),
            "other.example/article": html_response(),
        }
    )
    dns = FakeDNS({"news.example": [PUBLIC_IP], "other.example": [OTHER_PUBLIC_IP]})
    page = await fetch(recorder, "http://news.example/start", dns=dns)

    assert page.url == "http://news.example/start"
    assert page.final_url == "https://other.example/article?id=1"
    assert [str(r.url) for r in recorder.requests] == [
        f"http://{PUBLIC_IP}/start",
        f"http://{PUBLIC_IP}/moved",
        "https://other.example/article?id=1",
    ]
    # Every hop went through the guard.
    assert dns.lookups == [("news.example", 80), ("news.example", 80), ("other.example", 443)]


@pytest.mark.parametrize(("limit", "ok"), [(3, True), (2, False)])
async def test_refuses_more_redirects_than_the_limit(limit: int, ok: bool) -> None:
    recorder = Recorder(
        {
            "news.example/0": redirect("/1"),
            "news.example/1": redirect("/2"),
            "news.example/2": redirect("/3"),
            "news.example/3": html_response(),
        }
    )
    settings = make_settings(max_redirects=limit)
    if ok:
        page = await fetch(recorder, "http://news.example/0", settings)
        assert page.final_url == "http://news.example/3"
        return
    with pytest.raises(TooManyRedirects) as caught:
        await fetch(recorder, "http://news.example/0", settings)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.status == 302
    assert "http://news.example/2" in str(caught.value)
    assert "more than 2 redirects" in str(caught.value)
    assert len(recorder.requests) == 3


async def test_a_redirect_loop_ends() -> None:
    recorder = Recorder({"news.example/loop": redirect("/loop")})
    with pytest.raises(TooManyRedirects):
        await fetch(recorder, "http://news.example/loop")
    assert len(recorder.requests) == 6


async def test_a_redirect_without_location_is_permanent() -> None:
    recorder = Recorder({"news.example/": lambda _: httpx.Response(302)})
    with pytest.raises(FetchFailed, match="HTTP 302"):
        await fetch(recorder, "http://news.example/")


async def test_an_invalid_international_host_is_permanent_not_a_crash() -> None:
    recorder = Recorder({"news.example/": redirect("http://xn--zz--.test/x")})
    with pytest.raises(FetchFailed, match=r"invalid URL.*hyphen") as caught:
        await fetch(recorder, "http://news.example/")
    assert not isinstance(caught.value, FetchUnavailable)
    with pytest.raises(FetchFailed, match="invalid URL"):
        await fetch(Recorder({}), "http://xn--zz--.test/")


# --- the SSRF guard --------------------------------------------------------------------------


async def test_refuses_a_redirect_to_loopback() -> None:
    recorder = Recorder({"news.example/": redirect("http://127.0.0.1:6379/")})
    with pytest.raises(FetchRefused) as caught:
        await fetch(recorder, "http://news.example/")
    assert "loopback address 127.0.0.1" in str(caught.value)
    assert "http://127.0.0.1:6379/" in str(caught.value)
    assert len(recorder.requests) == 1  # the redirect was never followed


@pytest.mark.parametrize(
    "addresses", [["10.0.0.1"], [PUBLIC_IP, "10.0.0.1"], ["::1"], ["fd12:3456::1"]]
)
async def test_refuses_a_name_resolving_to_a_private_address(addresses: list[str]) -> None:
    recorder = Recorder({"intranet.example/": html_response()})
    dns = FakeDNS({"intranet.example": addresses})
    with pytest.raises(FetchRefused, match=r"intranet\.example resolves to"):
        await fetch(recorder, "http://intranet.example/", dns=dns)
    assert recorder.requests == []


async def test_refuses_a_redirect_to_a_name_resolving_to_a_private_address() -> None:
    recorder = Recorder({"news.example/": redirect("https://evil.example/")})
    dns = FakeDNS({"news.example": [PUBLIC_IP], "evil.example": ["10.0.0.1"]})
    with pytest.raises(FetchRefused, match=re.escape("private address 10.0.0.1")):
        await fetch(recorder, "http://news.example/", dns=dns)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
    ],
)
async def test_refuses_non_public_literal_addresses(url: str) -> None:
    recorder = Recorder({})
    dns = FakeDNS({})
    with pytest.raises(FetchRefused, match="refused"):
        await fetch(recorder, url, dns=dns)
    assert recorder.requests == []
    assert dns.lookups == []


async def test_refuses_a_redirect_to_the_metadata_service() -> None:
    recorder = Recorder({"news.example/": redirect("http://169.254.169.254/latest/")})
    with pytest.raises(FetchRefused, match=re.escape("link-local address 169.254.169.254")):
        await fetch(recorder, "http://news.example/")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://news.example/page.html", "gopher://news.example/"]
)
async def test_refuses_schemes_other_than_http(url: str) -> None:
    recorder = Recorder({})
    with pytest.raises(FetchRefused, match="is not http or https"):
        await fetch(recorder, url, make_settings(allow_private_networks=True))
    assert recorder.requests == []


async def test_refuses_a_redirect_to_a_file_url() -> None:
    recorder = Recorder({"news.example/": redirect("file:///etc/passwd")})
    with pytest.raises(FetchRefused, match=r"file:/+etc/passwd: scheme 'file'"):
        await fetch(recorder, "http://news.example/")


async def test_private_addresses_are_allowed_when_the_setting_is_on() -> None:
    recorder = Recorder(
        {
            "news.example/": redirect("http://127.0.0.1:8080/"),
            "127.0.0.1:8080/": redirect("http://intranet.example/"),
            "intranet.example/": html_response(),
        }
    )
    dns = FakeDNS({"intranet.example": ["10.0.0.1"]})
    page = await fetch(
        recorder, "http://news.example/", make_settings(allow_private_networks=True), dns=dns
    )
    assert page.final_url == "http://intranet.example/"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd00::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:a00:1::", "private"),
        ("240.0.0.1", "private"),
        ("100.64.0.1", "non-global"),
    ],
)
def test_address_policy(address: str, reason: str | None) -> None:
    ip = parse_ip(address)
    assert ip is not None
    assert refusal_reason(ip) == reason


async def test_dns_failure_is_transient() -> None:
    with pytest.raises(FetchUnavailable, match=re.escape("cannot resolve nowhere.example")):
        await fetch(Recorder({}), "http://nowhere.example/", dns=FakeDNS({}))


async def test_a_resolver_answer_that_is_not_an_address_is_refused() -> None:
    dns = FakeDNS({"odd.example": ["not-an-ip"]})
    with pytest.raises(FetchRefused):
        await fetch(Recorder({}), "http://odd.example/", dns=dns)


# --- content type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/pdf", "image/png", "application/json", "text/plain"]
)
async def test_refuses_non_html_without_reading_the_body(content_type: str) -> None:
    body = Chunks(b"x" * 100, 10)
    recorder = Recorder(
        {
            "news.example/": lambda _: httpx.Response(
                200, headers={"Content-Type": content_type}, stream=body
            )
        }
    )
    with pytest.raises(NotHtml) as caught:
        await fetch(recorder, "http://news.example/")
    assert caught.value.status == 200
    assert content_type in str(caught.value)
    assert body.read == 0


async def test_accepts_xhtml() -> None:
    recorder = Recorder({"news.example/": html_response(content_type="application/xhtml+xml")})
    page = await fetch(recorder, "http://news.example/")
    assert page.content_type == "application/xhtml+xml"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream"])
async def test_sniffs_html_when_the_type_says_nothing(content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b"\xef\xbb\xbf \n<!doctype HTML><html><body>caf\xc3\xa9</body></html>"
    recorder = Recorder({"news.example/": lambda _: respond(200, headers, body)})
    page = await fetch(recorder, "http://news.example/")
    assert page.content_type == "text/html"
    assert "café" in page.html


async def test_refuses_an_untyped_body_that_is_not_html() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    recorder = Recorder({"news.example/": lambda _: respond(200, {}, png)})
    with pytest.raises(NotHtml, match="does not look like HTML"):
        await fetch(recorder, "http://news.example/")


def test_sniffing_patterns() -> None:
    assert looks_like_html(b"<html lang=en>")
    assert looks_like_html(b"  <!-- comment -->")
    assert looks_like_html(b"<P>hi")
    assert not looks_like_html(b"<paragraph>")  # a tag must end after the name
    assert not looks_like_html(b'{"json": true}')
    assert not looks_like_html(b"")


# --- size cap --------------------------------------------------------------------------------


async def test_refuses_an_oversized_body_while_streaming() -> None:
    body = Chunks(b"<p>" + b"x" * 997, 1_000)  # 1 MB in 1 KB chunks, no Content-Length
    recorder = Recorder(
        {
            "news.example/": lambda _: httpx.Response(
                200, headers={"Content-Type": "text/html"}, stream=body
            )
        }
    )
    with pytest.raises(PageTooLarge, match="over the 10000-byte cap"):
        await fetch(recorder, "http://news.example/", make_settings(max_page_bytes=10_000))
    assert body.read == 11  # stopped at the first chunk past the cap


async def test_accepts_a_body_exactly_at_the_cap() -> None:
    body = HTML + b" " * (1000 - len(HTML))
    recorder = Recorder({"news.example/": html_response(body)})
    page = await fetch(recorder, "http://news.example/", make_settings(max_page_bytes=1000))
    assert page.size_bytes == 1000


async def test_refuses_early_on_a_content_length_over_the_cap() -> None:
    body = Chunks(b"x", 1)
    recorder = Recorder(
        {
            "news.example/": lambda _: httpx.Response(
                200,
                headers={"Content-Type": "text/html", "Content-Length": "10000001"},
                stream=body,
            )
        }
    )
    with pytest.raises(PageTooLarge, match="Content-Length 10000001"):
        await fetch(recorder, "http://news.example/")
    assert body.read == 0


async def test_refuses_a_gzip_bomb_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB in ~50 KB
    assert len(bomb) < 100_000
    recorder = Recorder(
        {
            "news.example/": lambda _: respond(
                200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, bomb
            )
        }
    )
    with pytest.raises(PageTooLarge):
        await fetch(recorder, "http://news.example/", make_settings(max_page_bytes=1_000_000))


def test_decompressor_never_produces_much_more_than_asked() -> None:
    bomb = gzip.compress(b"\0" * 10_000_000)
    assert len(Decompressor("gzip").decompress(bomb, 1001)) == 1001


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw deflate
    ],
)
async def test_decompresses_gzip_and_deflate(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    recorder = Recorder(
        {
            "news.example/": lambda _: respond(
                200, {"Content-Type": "text/html", "Content-Encoding": encoding}, compress(HTML)
            )
        }
    )
    page = await fetch(recorder, "http://news.example/")
    assert page.html == HTML.decode()
    assert page.size_bytes == len(HTML)


async def test_accepts_a_response_built_in_memory() -> None:
    # httpx.Response(content=...) has read and un-gzipped its body already.
    recorder = Recorder(
        {
            "news.example/": lambda _: httpx.Response(
                200,
                headers={"Content-Type": "text/html", "Content-Encoding": "gzip"},
                content=gzip.compress(HTML),
            )
        }
    )
    page = await fetch(recorder, "http://news.example/")
    assert page.html == HTML.decode()


async def test_a_corrupt_gzip_body_is_permanent() -> None:
    recorder = Recorder(
        {
            "news.example/": lambda _: respond(
                200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, b"not gzip"
            )
        }
    )
    with pytest.raises(FetchFailed, match="corrupt gzip body"):
        await fetch(recorder, "http://news.example/")


# --- charsets --------------------------------------------------------------------------------


def page_in(text: str, encoding: str, head: str = "") -> bytes:
    return f"<!DOCTYPE html><html><head>{head}</head><body><p>{text}</p></body></html>".encode(
        encoding
    )


@pytest.mark.parametrize(("text", "charset"), [(RUSSIAN, "windows-1251"), (SHORT, "windows-1252")])
async def test_charset_from_the_content_type_header(text: str, charset: str) -> None:
    recorder = Recorder(
        {"news.example/": html_response(page_in(text, charset), f"text/html; charset={charset}")}
    )
    page = await fetch(recorder, "http://news.example/")
    assert text in page.html


@pytest.mark.parametrize(
    "head",
    [
        '<meta charset="windows-1252">',
        "<meta charset=windows-1252>",
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
    ],
)
async def test_charset_from_meta(head: str) -> None:
    recorder = Recorder(
        {"news.example/": html_response(page_in(SHORT, "cp1252", head), "text/html")}
    )
    page = await fetch(recorder, "http://news.example/")
    assert SHORT in page.html


@pytest.mark.parametrize(
    ("head", "header_charset"),
    [('<meta charset="windows-1251">', None), ("", "windows-1251"), ("", '"cp1251"')],
)
def test_a_declared_charset_needs_no_detection(
    head: str, header_charset: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Detection is slow and can guess wrong: a declaration makes it unnecessary.
    def no_detection(body: bytes) -> str | None:
        raise AssertionError("detection ran")

    monkeypatch.setattr(content, "_detected_charset", no_detection)
    html, encoding = decode_html(page_in(RUSSIAN, "cp1251", head), header_charset)
    assert encoding == "cp1251"
    assert RUSSIAN in html


def test_a_meta_claiming_utf16_means_utf8() -> None:
    # Bytes that spell out a <meta> in ASCII are not UTF-16, whatever it says (HTML standard).
    html, encoding = decode_html(page_in(SHORT, "utf-8", '<meta charset="utf-16">'), None)
    assert encoding == "utf-8"
    assert SHORT in html


def test_declarations_beat_detection() -> None:
    # Without a declaration, this short text is taken for windows-1250 ("élčves"), which is why
    # the header and meta tests above use it.
    html, encoding = decode_html(page_in(SHORT, "cp1252"), None)
    assert encoding != "cp1252"
    assert SHORT not in html


@pytest.mark.parametrize(("text", "encoding"), [(RUSSIAN, "cp1251"), (FRENCH, "cp1252")])
async def test_charset_detected_when_undeclared(text: str, encoding: str) -> None:
    recorder = Recorder({"news.example/": html_response(page_in(text, encoding), "text/html")})
    page = await fetch(recorder, "http://news.example/")
    assert text in page.html


def test_latin1_label_decodes_as_windows_1252() -> None:
    # Pages labelled iso-8859-1 use windows-1252's quotes; browsers decode them so.
    html, encoding = decode_html(page_in(FRENCH, "cp1252"), "ISO-8859-1")
    assert FRENCH in html
    assert encoding == "cp1252"


@pytest.mark.parametrize("charset", ["no-such-charset", "base64", '"utf-8"'])
def test_a_bogus_charset_label_does_not_crash(charset: str) -> None:
    html, _ = decode_html(page_in("café", "utf-8"), charset)
    assert "café" in html


def test_undecodable_bytes_never_crash() -> None:
    html, _ = decode_html(b"<html>\xff\xfe\x00\x81 ok</html>" + bytes(range(256)), "utf-8")
    assert "ok" in html
    html, _ = decode_html(bytes(range(256)) * 4, None)
    assert isinstance(html, str)


def test_a_byte_order_mark_wins_over_the_header() -> None:
    body = codecs.BOM_UTF16_LE + "<p>Привет</p>".encode("utf-16-le")
    html, _ = decode_html(body, "latin-1")
    assert "<p>Привет</p>" in html


# --- failure classes -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_server_errors_and_throttling_are_transient(status: int) -> None:
    recorder = Recorder(
        {"news.example/": lambda _: httpx.Response(status, headers={"Retry-After": "120"})}
    )
    with pytest.raises(FetchUnavailable) as caught:
        await fetch(recorder, "http://news.example/")
    assert isinstance(caught.value, TransientError)
    assert caught.value.status == status
    assert caught.value.retry_after_s == 120
    assert f"HTTP {status}" in str(caught.value)
    assert "http://news.example/" in str(caught.value)


async def test_retry_after_as_a_date() -> None:
    recorder = Recorder(
        {
            "news.example/": lambda _: httpx.Response(
                503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
            )
        }
    )
    with pytest.raises(FetchUnavailable) as caught:
        await fetch(recorder, "http://news.example/")
    assert caught.value.retry_after_s == 0.0  # in the past


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
async def test_client_errors_are_permanent(status: int) -> None:
    recorder = Recorder({"news.example/": lambda _: httpx.Response(status)})
    with pytest.raises(FetchFailed) as caught:
        await fetch(recorder, "http://news.example/")
    assert isinstance(caught.value, PermanentError)
    assert not isinstance(caught.value, TransientError)
    assert caught.value.status == status
    assert str(caught.value).startswith(f"http://news.example/: HTTP {status}")


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.RemoteProtocolError],
)
async def test_network_failures_are_transient(error: type[httpx.TransportError]) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    with pytest.raises(FetchUnavailable) as caught:
        await fetch(handler, "http://news.example/")
    assert caught.value.status is None


async def test_the_whole_fetch_has_a_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    started = time.monotonic()
    with pytest.raises(FetchUnavailable, match=re.escape("timed out after 0.2 s")):
        await fetch(slow, "http://news.example/", make_settings(fetch_timeout_s=0.2))
    assert time.monotonic() - started < 2


async def test_an_invalid_url_is_permanent() -> None:
    with pytest.raises(FetchFailed):
        await fetch(Recorder({}), "http://[::1/")


# --- against a real HTTP server on 127.0.0.1 --------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    seen: list[str] = []  # noqa: RUF012 -- shared on purpose: the tests read what the server saw

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        path = self.path
        if path == "/page":
            body = gzip.compress(page_in(RUSSIAN, "cp1251"))
            self._send(
                200,
                body,
                {"Content-Type": "text/html; charset=windows-1251", "Content-Encoding": "gzip"},
            )
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            location = f"/hop/{left - 1}" if left > 0 else "/page"
            self._send(302, b"", {"Location": location})
        elif path == "/endless":
            # No Content-Length: the body ends when the connection closes, which is never.
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            try:
                for _ in range(100_000):
                    self.wfile.write(b"<p>" + b"x" * 8189)
            except OSError:
                pass  # the client hung up, as it should
        elif path == "/bomb":
            self._send(200, BOMB, {"Content-Type": "text/html", "Content-Encoding": "gzip"})
        elif path == "/stall":
            time.sleep(3)
            self._send(200, HTML, {"Content-Type": "text/html"})
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            try:
                for _ in range(30):
                    self.wfile.write(b"<p>x</p>")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif path == "/unavailable":
            self._send(503, b"busy", {"Content-Type": "text/plain"})
        else:
            self._send(404, b"no", {"Content-Type": "text/plain"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        reply(self, status, headers, body)


BOMB = gzip.compress(b"\0" * 20_000_000)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietHTTPServer.start(_Handler)
    yield httpd.base
    httpd.shutdown()
    httpd.server_close()


LOCAL = make_settings(allow_private_networks=True, fetch_timeout_s=1.0)


async def fetch_local(url: str, settings: Settings = LOCAL) -> FetchedPage:
    async with make_client(settings) as client:
        return await fetch_page(client, url, settings)


async def test_real_server_redirects_gzip_and_charset(server: str) -> None:
    page = await fetch_local(f"{server}/hop/2")
    assert page.final_url == f"{server}/page"
    assert page.status == 200
    assert RUSSIAN in page.html
    assert page.size_bytes == len(page_in(RUSSIAN, "cp1251"))


async def test_real_server_too_many_redirects(server: str) -> None:
    with pytest.raises(TooManyRedirects):
        await fetch_local(f"{server}/hop/9")


async def test_real_server_on_loopback_is_refused_by_default(server: str) -> None:
    before = len(_Handler.seen)
    with pytest.raises(FetchRefused, match="loopback"):
        await fetch_local(f"{server}/page", make_settings())
    assert len(_Handler.seen) == before


async def test_real_server_endless_body_is_cut_at_the_cap(server: str) -> None:
    with pytest.raises(PageTooLarge):
        await fetch_local(f"{server}/endless", LOCAL.model_copy(update={"max_page_bytes": 50_000}))


async def test_real_server_gzip_bomb(server: str) -> None:
    with pytest.raises(PageTooLarge):
        await fetch_local(f"{server}/bomb")


@pytest.mark.parametrize("path", ["/stall", "/drip"])
async def test_real_server_timeouts_are_transient(server: str, path: str) -> None:
    settings = LOCAL.model_copy(update={"fetch_timeout_s": 0.5})
    started = time.monotonic()
    with pytest.raises(FetchUnavailable, match="timed out"):
        await fetch_local(f"{server}{path}", settings)
    assert time.monotonic() - started < 2


async def test_real_server_statuses(server: str) -> None:
    with pytest.raises(FetchUnavailable, match="HTTP 503"):
        await fetch_local(f"{server}/unavailable")
    with pytest.raises(FetchFailed, match="HTTP 404"):
        await fetch_local(f"{server}/missing")


async def test_real_server_refused_connection_is_transient() -> None:
    with pytest.raises(FetchUnavailable, match="ConnectError"):
        await fetch_local("http://127.0.0.1:9/")


async def test_an_allowed_network_is_opened_and_nothing_else() -> None:
    settings = make_settings(allowed_networks="10.20.0.0/16, 127.0.0.1")
    recorder = Recorder({"wiki.corp/": html_response(), "intranet.example/": html_response()})
    dns = FakeDNS({"wiki.corp": ["10.20.3.4"], "intranet.example": ["10.0.0.1"]})
    page = await fetch(recorder, "http://wiki.corp/", settings, dns=dns)
    assert page.status == 200
    with pytest.raises(FetchRefused, match=re.escape("10.0.0.1")):
        await fetch(recorder, "http://intranet.example/", settings, dns=dns)
    with pytest.raises(FetchRefused, match="link-local"):
        await fetch(recorder, "http://169.254.169.254/latest/", settings, dns=dns)


def test_a_bad_allowed_network_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        make_settings(allowed_networks="10.0.0.0/8, intranet")
