"""Feeds and sitemaps read into article URLs; XML and robots.txt fetches; conditional GET."""

import gzip
from collections.abc import Callable

import httpx
import pytest
import typer

from services.cli.feeds import parse_every
from services.fetcher.content import looks_like_xml
from services.fetcher.fetch import (
    ROBOTS,
    XML,
    FetchedPage,
    PageTooLarge,
    WrongContentType,
    fetch_page,
)
from services.fetcher.sources import (
    SourceError,
    expand,
    expand_sitemap,
    feed_entries,
    gunzipped,
    is_sitemap,
    read_sitemap,
)
from shared.settings import Settings

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>News</title>
<item><title>One</title><link>https://news.example/one?utm_source=rss</link></item>
<item><title>Two</title><link>/two</link></item>
<item><title>One again</title><link>https://news.example/one?utm_source=rss</link></item>
<item><title>Guid</title><guid isPermaLink="true">https://news.example/three</guid></item>
<item><title>No link</title><description>x</description></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>News</title>
<entry><title>A</title><link rel="alternate" href="https://news.example/a"/>
  <link rel="enclosure" href="https://news.example/a.mp3"/><id>urn:a</id></entry>
<entry><title>B</title><link href="https://news.example/b"/><id>urn:b</id></entry>
</feed>"""

URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc>https://news.example/s1</loc>
    <news:news><news:publication><news:name>N</news:name><news:language>en</news:language>
    </news:publication><news:title>S1</news:title></news:news>
    <image:image><image:loc>https://news.example/s1.jpg</image:loc></image:image></url>
  <url><loc> https://news.example/s2 </loc></url>
  <url><loc>https://news.example/s1</loc></url>
</urlset>"""

INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://news.example/a.xml</loc></sitemap>
  <sitemap><loc>https://news.example/b.xml.gz</loc></sitemap>
  <sitemap><loc>https://news.example/a.xml</loc></sitemap>
</sitemapindex>"""


def test_rss_entries_absolute_in_order_without_duplicates() -> None:
    assert feed_entries(RSS, "https://news.example/feed") == [
        "https://news.example/one?utm_source=rss",
        "https://news.example/two",
        "https://news.example/three",
    ]


def test_entries_no_article_could_be_submitted_with_are_left_out() -> None:
    feed = b"""<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><link>http://xn--zz--.test/bad-idn</link></item>
<item><link>https://news.example:99999/bad-port</link></item>
<item><link>https://news.example/good</link></item>
</channel></rss>"""
    assert feed_entries(feed, "https://news.example/feed") == ["https://news.example/good"]


def test_atom_entries_take_the_alternate_link() -> None:
    assert feed_entries(ATOM, "https://news.example/atom") == [
        "https://news.example/a", "https://news.example/b"]


def test_not_a_feed_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="not an RSS or Atom feed"):
        feed_entries(b"<html><body>hello</body></html>", "https://news.example/")


def test_a_feed_body_is_never_taken_for_a_file_name() -> None:
    # feedparser opens a str or bytes argument as a path: it must only ever get a stream.
    with pytest.raises(SourceError):
        feed_entries(b"/etc/hostname", "https://news.example/")


def test_sitemap_urls_google_news_included_without_duplicates() -> None:
    pages, children = read_sitemap(URLSET, "https://news.example/sitemap.xml")
    assert pages == ["https://news.example/s1", "https://news.example/s2"]
    assert children == []


def test_sitemap_index_lists_its_sitemaps_once() -> None:
    pages, children = read_sitemap(INDEX, "https://news.example/index.xml")
    assert pages == []
    assert children == ["https://news.example/a.xml", "https://news.example/b.xml.gz"]


def test_not_a_sitemap() -> None:
    with pytest.raises(SourceError, match="not a sitemap"):
        read_sitemap(RSS, "https://news.example/feed")
    with pytest.raises(SourceError, match="not well-formed"):
        read_sitemap(b"<urlset><url>", "https://news.example/s.xml")


def test_entity_expansion_bombs_are_refused() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(f'<!ENTITY {c} "{(("&" + p + ";") * 10)}">'.encode()
                       for p, c in zip("abcdefgh", "bcdefghi", strict=True))
            + b"]><urlset><url><loc>&i;</loc></url></urlset>")
    with pytest.raises(SourceError):
        read_sitemap(bomb, "https://news.example/s.xml")


def test_gzipped_sitemap_files_within_the_cap() -> None:
    assert gunzipped(gzip.compress(URLSET), 10_000) == URLSET
    assert gunzipped(URLSET, 10) == URLSET  # not gzip: as it is
    with pytest.raises(SourceError, match="cap"):
        gunzipped(gzip.compress(b"\0" * 1_000_000), 10_000)


def test_sniffing_feeds_and_sitemaps() -> None:
    assert is_sitemap(URLSET) and is_sitemap(INDEX) and not is_sitemap(RSS)
    assert looks_like_xml(RSS) and looks_like_xml(b"\n<rss version='2.0'>")
    assert looks_like_xml(b"<!-- hi --><urlset>") and looks_like_xml(gzip.compress(b"x"))
    assert not looks_like_xml(b"<!doctype html><html>")


def page(url: str, body: bytes) -> FetchedPage:
    return FetchedPage(url=url, final_url=url, status=200, content_type="application/xml",
                       html="", size_bytes=len(body), elapsed_ms=0.0, raw=body)


async def test_a_sitemap_index_expands_through_its_sitemaps_once_each() -> None:
    child_a = URLSET
    child_b = gzip.compress(URLSET.replace(b"s2", b"s3"))
    files = {"https://news.example/index.xml": INDEX, "https://news.example/a.xml": child_a,
             "https://news.example/b.xml.gz": child_b}
    fetched: list[str] = []

    async def fetch(url: str) -> FetchedPage:
        fetched.append(url)
        return page(url, files[url])

    urls = await expand_sitemap(fetch, "https://news.example/index.xml", 1_000_000, 10)
    assert urls == ["https://news.example/s1", "https://news.example/s2",
                    "https://news.example/s3"]
    assert fetched == list(files)
    assert await expand(fetch, "https://news.example/index.xml", 1_000_000, 10) == urls
    # The cap on files read.
    assert await expand_sitemap(fetch, "https://news.example/index.xml", 1_000_000, 1) == []


async def test_expand_tells_feeds_from_sitemaps() -> None:
    async def fetch(url: str) -> FetchedPage:
        return page(url, RSS)

    assert len(await expand(fetch, "https://news.example/feed", 1_000_000, 10)) == 3


# --- fetching XML and robots.txt, and conditional GET (httpx.MockTransport) ------------------

SETTINGS = Settings(allow_private_networks=True, max_source_bytes=5_000, fetch_timeout_s=5.0)


async def get(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: object
) -> FetchedPage:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await fetch_page(client, "http://127.0.0.1/x", SETTINGS, **kwargs)  # type: ignore[arg-type]  # kwargs of fetch_page


def streamed(status: int, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


@pytest.mark.parametrize("content_type", [
    "application/rss+xml", "application/atom+xml", "text/xml; charset=utf-8", "application/xml",
    "text/html", "text/plain", "application/octet-stream", "application/x-gzip"])
async def test_feeds_and_sitemaps_come_with_many_types(content_type: str) -> None:
    fetched = await get(lambda _: streamed(200, {"Content-Type": content_type}, RSS), kind=XML)
    assert fetched.raw == RSS and fetched.html == ""


async def test_xml_fetch_refuses_other_types_and_html_pages() -> None:
    with pytest.raises(WrongContentType, match="not XML"):
        await get(lambda _: streamed(200, {"Content-Type": "image/png"}, b"\x89PNG"), kind=XML)
    with pytest.raises(WrongContentType, match="does not look like XML"):
        await get(lambda _: streamed(200, {"Content-Type": "text/html"},
                                     b"<!doctype html><html></html>"), kind=XML)


async def test_xml_fetch_has_its_own_cap() -> None:
    with pytest.raises(PageTooLarge):
        await get(lambda _: streamed(200, {"Content-Type": "application/xml"},
                                     b"<rss>" + b" " * 6_000), kind=XML)


async def test_robots_txt_of_any_type_is_cut_at_500_kib() -> None:
    body = b"User-agent: *\nDisallow: /x\n" + b"#" * 600_000
    fetched = await get(lambda _: streamed(200, {"Content-Type": "text/html"}, body), kind=ROBOTS)
    assert len(fetched.raw) == 500 * 1024
    assert fetched.raw.startswith(b"User-agent")


async def test_conditional_get_sends_validators_and_reads_a_304() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(304, headers={"ETag": '"v2"'})

    fetched = await get(handler, validators={"etag": '"v1"', "last_modified": "Tue, 1 Jan 2030"})
    assert fetched.not_modified and fetched.etag == '"v2"' and fetched.html == ""
    assert seen[0].headers["if-none-match"] == '"v1"'
    assert seen[0].headers["if-modified-since"] == "Tue, 1 Jan 2030"


async def test_validators_are_recorded_from_a_200() -> None:
    fetched = await get(lambda _: streamed(200, {
        "Content-Type": "text/html", "ETag": 'W/"x"', "Last-Modified": "Mon, 1 Jan 2024"},
        b"<html><p>x</p></html>"))
    assert (fetched.etag, fetched.last_modified) == ('W/"x"', "Mon, 1 Jan 2024")
    assert not fetched.not_modified


async def test_a_304_without_validators_sent_is_a_failure() -> None:
    with pytest.raises(Exception, match="304"):
        await get(lambda _: httpx.Response(304))


@pytest.mark.parametrize(("text", "seconds"), [
    ("15m", 900), ("2h", 7200), ("1d", 86_400), ("90s", 90), ("600", 600), (" 5M ", 300)])
def test_parse_every(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["10s", "fast", "1w", "-5m", ""])
def test_parse_every_refuses(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_every(text)
