"""Fetch one web page (or feed, sitemap, robots.txt) safely: SSRF guard, redirects by hand, size
and type limits, charset, conditional GET."""

import asyncio
import dataclasses
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx

from services.fetcher.content import (
    ACCEPT_ENCODING,
    HTML_TYPES,
    SNIFF_BYTES,
    SNIFFED_TYPES,
    XML_TYPES,
    Decompressor,
    decode_html,
    looks_like_html,
    looks_like_source,
    parse_content_type,
)
from shared.errors import NewsflowError, PermanentError, TransientError
from shared.netguard import (
    Resolver,
    guard_reason,
    parse_ip,
    parse_networks,
    resolve_host,
    retry_after_s,
)
from shared.settings import Settings

__all__ = [
    "PAGE",
    "ROBOTS",
    "XML",
    "DocumentKind",
    "FetchError",
    "FetchFailed",
    "FetchRefused",
    "FetchUnavailable",
    "FetchedPage",
    "NotHtml",
    "PageTooLarge",
    "Resolver",
    "TooManyRedirects",
    "WrongContentType",
    "fetch_page",
    "make_client",
    "resolve_host",
]

logger = logging.getLogger(__name__)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DECODE_IN_THREAD_BYTES = 256 * 1024
_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
_ROBOTS_MAX_BYTES = 500 * 1024
"""RFC 9309: a crawler must parse at least the first 500 KiB of a robots.txt; the rest is cut."""


@dataclasses.dataclass(frozen=True)
class DocumentKind:
    """What a fetch expects back: which content types, how an untyped body is recognised, how
    much of it may be read, and whether it is decoded as HTML text."""

    label: str
    accept: str
    """The Accept header sent."""
    types: frozenset[str] | None
    """Content types taken as they are; None takes any."""
    sniffed_types: frozenset[str]
    """Content types whose body is sniffed with `sniff` instead of being refused."""
    sniff: Callable[[bytes], bool]
    max_bytes: Callable[[Settings], int]
    decode: bool
    """Decode as HTML text (into `html`); otherwise the bytes are kept (in `raw`)."""
    truncate: bool = False
    """Keep the first `max_bytes` of a longer body instead of refusing it."""


PAGE = DocumentKind(
    "HTML", _ACCEPT, HTML_TYPES, SNIFFED_TYPES, looks_like_html,
    lambda s: s.max_page_bytes, decode=True,
)
XML = DocumentKind(
    "XML",
    "application/rss+xml,application/atom+xml,application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.1",
    XML_TYPES,
    # Feeds and sitemaps are often served with a wrong type; their first bytes tell. Plain-text
    # sitemaps (one URL a line) come as text/plain.
    SNIFFED_TYPES | {"text/plain", "text/html"},
    looks_like_source,
    lambda s: s.max_source_bytes,
    decode=False,
)
ROBOTS = DocumentKind(
    "robots.txt", "text/plain,*/*;q=0.1", None, frozenset(), lambda _: True,
    lambda _: _ROBOTS_MAX_BYTES, decode=False, truncate=True,
)


@dataclasses.dataclass(frozen=True)
class FetchedPage:
    """A fetched page, decoded (or, for kinds not decoded, its bytes); a 304 has no body."""

    url: str
    """As requested."""
    final_url: str
    """After redirects."""
    status: int
    content_type: str
    """The media type, e.g. "text/html" (also when it was sniffed from the body)."""
    html: str
    size_bytes: int
    """Bytes of body read, after decompression."""
    elapsed_ms: float
    etag: str | None = None
    last_modified: str | None = None
    raw: bytes = b""
    """The body, for kinds that are not decoded as HTML (feeds, sitemaps, robots.txt)."""
    charset: str | None = None
    """The Content-Type's charset, for kinds not decoded here (their reader applies it)."""

    @property
    def not_modified(self) -> bool:
        """The server answered a conditional GET with 304: what was fetched before still holds."""
        return self.status == 304


# The errors fetch_page raises, in the tree of shared/errors.py. Each has `url` (the hop that
# failed), `status` (the HTTP status, or None before one was received) and `reason`.
#
#   FetchError
#   ├── FetchFailed (PermanentError)       never works: a 4xx other than 408/429, a bad URL…
#   │   ├── FetchRefused                   the SSRF guard: non-public address, scheme not http(s)
#   │   ├── TooManyRedirects
#   │   ├── WrongContentType
#   │   │   └── NotHtml
#   │   ├── PageTooLarge
#   │   └── DisallowedByRobots           robots.txt forbids it (raised by crawl.py)
#   └── FetchUnavailable (TransientError)  try later: timeout, connection or DNS failure, 5xx,
#                                          408, 429; `retry_after_s` from Retry-After if given


class FetchError(NewsflowError):
    """Any failure of fetch_page."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


class FetchFailed(FetchError, PermanentError):
    """The page can never be fetched as asked."""


class FetchRefused(FetchFailed):
    """The SSRF guard refused the URL: its scheme, or an address its host is or resolves to."""


class TooManyRedirects(FetchFailed):
    """More redirects than settings.max_redirects."""


class WrongContentType(FetchFailed):
    """The response is not of a type the fetch expects (HTML, or XML for feeds and sitemaps)."""


class NotHtml(WrongContentType):
    """The response is not an HTML page."""


class PageTooLarge(FetchFailed):
    """The body is larger than settings.max_page_bytes (decompressed)."""


class FetchUnavailable(FetchError, TransientError):
    """The fetch failed this time and may work later."""

    def __init__(
        self, url: str, reason: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(url, reason, status)
        self.retry_after_s = retry_after_s


def make_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client fetch_page expects: timeouts, user agent, redirects left to fetch_page."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.fetch_timeout_s),
        headers={
            "User-Agent": settings.user_agent,
            "Accept": _ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        },
        follow_redirects=False,
        # An environment proxy would resolve host names itself, behind the SSRF guard's back.
        trust_env=False,
        limits=httpx.Limits(max_connections=settings.fetch_concurrency),
    )


async def fetch_page(
    client: httpx.AsyncClient,
    url: str,
    settings: Settings,
    resolve: Resolver = resolve_host,
    *,
    kind: DocumentKind = PAGE,
    validators: Mapping[str, str] | None = None,
) -> FetchedPage:
    """GET an HTML page (or another `kind` of document), following up to settings.max_redirects
    redirects, each checked by the SSRF guard. The whole fetch, DNS and redirects included, must
    end within settings.fetch_timeout_s, so a server dripping bytes cannot hold a worker forever.
    `validators` ("etag", "last_modified" from an earlier fetch) make it a conditional GET; a 304
    answer comes back as a page with `not_modified` and no body.
    Raises FetchFailed (permanent) or FetchUnavailable (transient)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(settings.fetch_timeout_s):
            page = await _follow(client, url, settings, resolve, kind, validators or {})
    except TimeoutError:
        raise FetchUnavailable(url, f"timed out after {settings.fetch_timeout_s:g} s") from None
    return dataclasses.replace(page, elapsed_ms=(time.perf_counter() - started) * 1000)


async def _follow(
    client: httpx.AsyncClient, url: str, settings: Settings, resolve: Resolver,
    kind: DocumentKind, validators: Mapping[str, str],
) -> FetchedPage:
    target = _parse_url(url)
    redirects = 0
    conditional = _conditional_headers(validators)
    while True:
        addresses = await _checked_addresses(target, settings, resolve)
        try:
            async with _send(
                client, target, addresses, settings, kind, conditional
            ) as response:
                location = response.headers.get("location")
                if response.status_code == 304 and conditional:
                    return _not_modified(url, target, response)
                if response.status_code not in _REDIRECT_STATUSES or location is None:
                    _raise_for_status(target, response)
                    return await _read_page(url, target, response, settings, kind)
                if redirects >= settings.max_redirects:
                    raise TooManyRedirects(
                        str(target),
                        f"more than {settings.max_redirects} redirects (HTTP {response.status_code}"
                        f" to {location})",
                        response.status_code,
                    )
        except httpx.TimeoutException as exc:
            raise FetchUnavailable(str(target), f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise FetchUnavailable(str(target), f"{type(exc).__name__}: {exc}") from exc
        except UnicodeError as exc:
            # httpx reads a redirect's Location as the response arrives: an invalid IDN there
            # (idna.IDNAError) is the site's answer, the same at every attempt.
            raise FetchFailed(str(target), f"invalid URL in the answer ({exc})") from exc
        redirects += 1
        next_target = _parse_url(location, base=target)
        logger.debug("redirect %d %s -> %s", redirects, target, next_target)
        target = next_target


def _conditional_headers(validators: Mapping[str, str]) -> dict[str, str]:
    headers = {}
    if etag := validators.get("etag"):
        headers["If-None-Match"] = etag
    if last_modified := validators.get("last_modified"):
        headers["If-Modified-Since"] = last_modified
    return headers


def _validators(response: httpx.Response) -> tuple[str | None, str | None]:
    """The ETag and Last-Modified of a response, for the next conditional GET."""
    return response.headers.get("etag"), response.headers.get("last-modified")


def _not_modified(requested: str, url: httpx.URL, response: httpx.Response) -> FetchedPage:
    media_type, _ = parse_content_type(response.headers.get("content-type"))
    etag, last_modified = _validators(response)
    return FetchedPage(
        url=requested, final_url=str(url), status=304, content_type=media_type, html="",
        size_bytes=0, elapsed_ms=0.0, etag=etag, last_modified=last_modified,
    )


def _parse_url(url: str, base: httpx.URL | None = None) -> httpx.URL:
    try:
        parsed = base.join(url) if base is not None else httpx.URL(url)
        parsed.host  # noqa: B018 -- decodes an IDN host: an invalid one raises IDNAError here
    except (httpx.InvalidURL, UnicodeError) as exc:  # (idna.IDNAError is a UnicodeError)
        where = f"{base}: redirect to " if base is not None else ""
        raise FetchFailed(f"{where}{url}", f"invalid URL ({exc})") from exc
    return parsed


def _how_to_allow(ip: object) -> str:
    """The end of a refusal: the settings that would open the address (a test site, an
    intranet), so the reader need not search the docs."""
    return (f"; to fetch it anyway set NEWSFLOW_ALLOWED_NETWORKS={ip} (or a network holding "
            "it), or NEWSFLOW_ALLOW_PRIVATE_NETWORKS=true")


async def _checked_addresses(url: httpx.URL, settings: Settings, resolve: Resolver) -> list[str]:
    """Apply the SSRF guard to `url`; return the checked addresses to connect to, or [] to let
    the transport connect by name."""
    if url.scheme not in ("http", "https"):
        # Refused whatever allow_private_networks says: that setting is about addresses.
        raise FetchRefused(str(url), f"scheme {url.scheme!r} is not http or https")
    host = url.host
    if not host:
        raise FetchFailed(str(url), "no host in URL")
    if settings.allow_private_networks:
        return []
    allowed = parse_networks(settings.allowed_networks)
    literal = parse_ip(host)
    if literal is not None:
        if reason := guard_reason(literal, allowed):
            raise FetchRefused(str(url), f"refused {reason} address {literal}"
                                         + _how_to_allow(literal))
        return []
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        # Failed lookups are retried: a DNS outage must not send every article to the dead letters.
        raise FetchUnavailable(str(url), f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise FetchUnavailable(str(url), f"{host} resolves to no address")
    # Every address is checked, not only the first: the transport may try any of them.
    for address in addresses:
        ip = parse_ip(address)
        if ip is None:
            raise FetchRefused(str(url), f"{host} resolves to {address!r}, not an IP address")
        if reason := guard_reason(ip, allowed):
            raise FetchRefused(str(url), f"{host} resolves to {reason} address {ip}"
                                         + _how_to_allow(ip))
    # DNS rebinding: a name could resolve to a public address for the check above and to a
    # private one when the transport resolves it again to connect. Plain http is therefore
    # connected to the checked addresses themselves (with the Host header naming the site).
    # https keeps the name, because the pool shares connections by URL host, and a connection
    # verified for one site must not serve another on the same IP; there the certificate check
    # stops rebinding instead: an internal server cannot prove it is the attacker's public name.
    # (The TCP connection and TLS hello to a rebound address still happen: a blind probe only.)
    return addresses if url.scheme == "http" else []


@asynccontextmanager
async def _send(
    client: httpx.AsyncClient, url: httpx.URL, addresses: list[str], settings: Settings,
    kind: DocumentKind, conditional: Mapping[str, str],
) -> AsyncIterator[httpx.Response]:
    """Send the GET and stream its response; with addresses, connect to the first that accepts."""
    # Set on every request, not only in make_client: the client may come from elsewhere, and the
    # Accept-Encoding must be one Decompressor reads.
    headers = {
        "User-Agent": settings.user_agent,
        "Accept": kind.accept,
        "Accept-Encoding": ACCEPT_ENCODING,
        **conditional,
    }
    if addresses:
        headers["Host"] = url.netloc.decode("ascii")
        for address in addresses[:-1]:
            try:
                response = await _get(client, url.copy_with(host=address), headers)
                break
            except httpx.ConnectError as exc:
                logger.debug(
                    "cannot connect to %s at %s (%s), trying the next address", url, address, exc
                )
        else:
            response = await _get(client, url.copy_with(host=addresses[-1]), headers)
    else:
        response = await _get(client, url, headers)
    try:
        yield response
    finally:
        await response.aclose()


async def _get(
    client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str]
) -> httpx.Response:
    request = client.build_request("GET", url, headers=headers)
    return await client.send(request, stream=True, follow_redirects=False)


def _raise_for_status(url: httpx.URL, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"HTTP {status} {response.reason_phrase}".strip()
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_s(response.headers.get("retry-after"))
        raise FetchUnavailable(str(url), reason, status, retry_after)
    if 300 <= status < 400:
        reason += " without a Location to follow"
    raise FetchFailed(str(url), reason, status)



async def _read_page(
    requested: str, url: httpx.URL, response: httpx.Response, settings: Settings,
    kind: DocumentKind,
) -> FetchedPage:
    """Check the type and size of a 2xx response, stream its body within the cap and decode it."""
    status = response.status_code
    cap = kind.max_bytes(settings)
    media_type, charset = parse_content_type(response.headers.get("content-type"))
    sniff = kind.types is not None and media_type in kind.sniffed_types
    if kind.types is not None and not sniff and media_type not in kind.types:
        error = NotHtml if kind is PAGE else WrongContentType
        raise error(str(url), f"content type {media_type!r} is not {kind.label}", status)
    declared = response.headers.get("content-length", "").strip()
    # Compressed or not, a body declared over the cap is refused before reading any of it.
    if declared.isdigit() and int(declared) > cap and not kind.truncate:
        reason = f"Content-Length {declared} is over the {cap}-byte cap"
        raise PageTooLarge(str(url), reason, status)

    body = await _read_body(url, response, cap, kind, sniff)
    etag, last_modified = _validators(response)
    if not kind.decode:
        logger.debug("fetched %s %d bytes %s", url, len(body), media_type or "sniffed")
        return FetchedPage(
            url=requested, final_url=str(url), status=status, content_type=media_type,
            html="", size_bytes=len(body), elapsed_ms=0.0, raw=body, etag=etag,
            last_modified=last_modified, charset=charset,
        )

    # Charset detection on a page of megabytes takes ~0.1 s of CPU: not on the event loop.
    if len(body) > _DECODE_IN_THREAD_BYTES:
        html, encoding = await asyncio.to_thread(decode_html, body, charset)
    else:
        html, encoding = decode_html(body, charset)
    logger.debug("fetched %s %d bytes %s %s", url, len(body), media_type or "sniffed", encoding)
    return FetchedPage(
        url=requested,
        final_url=str(url),
        status=status,
        content_type=media_type if media_type in HTML_TYPES else "text/html",
        html=html,
        size_bytes=len(body),
        elapsed_ms=0.0,
        etag=etag,
        last_modified=last_modified,
    )


async def _read_body(
    url: httpx.URL, response: httpx.Response, cap: int, kind: DocumentKind, sniff: bool
) -> bytes:
    """The decompressed body, refused as soon as it passes `cap` bytes (cut there instead for a
    kind that truncates) or, when `sniff`, as soon as its first bytes show it is not `kind`."""
    status = response.status_code
    try:
        decompressor = Decompressor(response.headers.get("content-encoding", ""))
    except ValueError as exc:
        raise FetchFailed(str(url), str(exc), status) from exc
    if response.is_stream_consumed:
        # A response built in memory (httpx.Response(content=...) in a MockTransport) was read,
        # and decoded, when it was made; a network response never is at this point.
        chunks: AsyncIterator[bytes] = _one_chunk(response.content)
        decompressor = Decompressor("identity")
    else:
        # Raw chunks, decompressed here at most cap + 1 bytes at a time: httpx's own decoding
        # would inflate a whole network chunk at once (~1000x its size for a gzip bomb).
        chunks = response.aiter_raw()

    body = bytearray()
    try:
        async for chunk in chunks:
            body += decompressor.decompress(chunk, cap - len(body) + 1)
            if len(body) > cap:
                break
            if sniff and len(body) >= SNIFF_BYTES:
                _check_sniffed(url, body, status, kind)
                sniff = False
        else:
            body += decompressor.flush()
    except zlib.error as exc:
        reason = f"corrupt {decompressor.encoding} body ({exc})"
        raise FetchFailed(str(url), reason, status) from exc
    if len(body) > cap:
        if kind.truncate:
            return bytes(body[:cap])
        raise PageTooLarge(str(url), f"body is over the {cap}-byte cap", status)
    if sniff:
        _check_sniffed(url, body, status, kind)
    return bytes(body)


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _check_sniffed(url: httpx.URL, body: bytearray, status: int, kind: DocumentKind) -> None:
    if not kind.sniff(bytes(body[:SNIFF_BYTES])):
        reason = f"no {kind.label} content type, and the body does not look like {kind.label}"
        raise (NotHtml if kind is PAGE else WrongContentType)(str(url), reason, status)
