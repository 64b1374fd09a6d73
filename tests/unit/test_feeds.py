"""Feeds and sitemaps read into article URLs (shared/sources); XML and robots.txt fetches;
conditional GET."""

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import typer

from services.cli.feeds import parse_every
from services.fetcher.content import looks_like_source, looks_like_xml
from services.fetcher.fetch import (
    ROBOTS,
    XML,
    FetchedPage,
    FetchUnavailable,
    PageTooLarge,
    WrongContentType,
    fetch_page,
)
from shared.settings import Settings
from shared.sources.expand import Document, Limits, expand, robots_url, same_page, since_cutoff
from shared.sources.read import (
    SourceError,
    _parse_feed,
    _stream_feed,
    gunzipped,
    kind_of,
    read_feed,
    read_sitemap,
    read_text_sitemap,
    robots_sitemaps,
)
from shared.sources.registry import RETRY_FIRST_S, backoff_s

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

DATED = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url><loc>https://news.example/2009</loc><lastmod>2009-06-01</lastmod></url>
  <url><loc>https://news.example/new</loc><lastmod>2025-03-02T10:00:00+02:00</lastmod></url>
  <url><loc>https://news.example/news</loc><news:news>
    <news:publication_date>2025-03-01T12:00:00Z</news:publication_date></news:news></url>
  <url><loc>https://news.example/old-news</loc><news:news>
    <news:publication_date>2010-01-01</news:publication_date></news:news></url>
  <url><loc>https://news.example/undated</loc></url>
</urlset>"""

SINCE = datetime(2025, 1, 1, tzinfo=UTC)


def urlset(*urls: str) -> bytes:
    locs = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    return (f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{locs}</urlset>").encode()


def test_rss_entries_absolute_in_order() -> None:
    listing = read_feed(RSS, "https://news.example/feed")
    assert listing.pages == [
        "https://news.example/one?utm_source=rss",
        "https://news.example/two",
        "https://news.example/one?utm_source=rss",
        "https://news.example/three",
    ]
    assert (listing.entries, listing.skipped) == (5, 1)


def test_entries_no_article_could_be_submitted_with_are_left_out() -> None:
    feed = b"""<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>
<item><link>http://xn--zz--.test/bad-idn</link></item>
<item><link>https://news.example:99999/bad-port</link></item>
<item><link>https://news.example/good</link></item>
</channel></rss>"""
    assert read_feed(feed, "https://news.example/feed").pages == ["https://news.example/good"]


def test_atom_entries_take_the_alternate_link() -> None:
    assert read_feed(ATOM, "https://news.example/atom").pages == [
        "https://news.example/a", "https://news.example/b"]


def test_an_entry_id_is_never_made_into_a_link() -> None:
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
    <entry><id>Correct Value</id><title>x</title></entry>
    <entry><id>tag:news.example,2025:7</id><title>y</title></entry>
    <entry><id>https://news.example/by-id</id><title>z</title></entry>
    <entry><id>urn:q</id><link href="/relative"/><title>r</title></entry></feed>"""
    listing = read_feed(atom, "https://news.example/atom")
    assert listing.pages == ["https://news.example/by-id", "https://news.example/relative"]
    assert listing.skipped == 2


def test_html_served_as_a_feed_type_says_what_was_sent() -> None:
    with pytest.raises(SourceError, match=r"served as application/rss\+xml, but the body is an "
                                          "HTML page"):
        read_feed(b"<!doctype html><html><body>hello</body></html>", "https://news.example/",
                  content_type="application/rss+xml")


def test_a_feed_body_is_never_taken_for_a_file_name() -> None:
    # feedparser opens a str or bytes argument as a path: it must only ever get a stream.
    with pytest.raises(SourceError):
        read_feed(b"/etc/hostname", "https://news.example/")


def test_feed_entries_older_than_since_are_left_out() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
    <item><link>https://news.example/old</link>
      <pubDate>Mon, 01 Jun 2009 10:00:00 GMT</pubDate></item>
    <item><link>https://news.example/new</link>
      <pubDate>Sun, 02 Mar 2025 10:00:00 GMT</pubDate></item>
    <item><link>https://news.example/undated</link></item></channel></rss>"""
    listing = read_feed(feed, "https://news.example/rss", since=SINCE)
    assert listing.pages == ["https://news.example/new", "https://news.example/undated"]
    assert listing.older == 1


@pytest.mark.parametrize(("charset", "path"), [
    ("koi8-r", "новости"), ("windows-1251", "новости"), ("shift_jis", "ニュース"),
    ("euc-jp", "ニュース"), ("gb2312", "新闻"), ("big5", "新聞")])
def test_the_http_charset_reads_feeds_and_sitemaps(charset: str, path: str) -> None:
    feed = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{path}</title>'
            f"<item><title>{path}</title><link>https://news.example/{path}</link></item>"
            "</channel></rss>").encode(charset)
    sitemap = (f'<?xml version="1.0"?><urlset><url><loc>https://news.example/{path}</loc>'
               "</url></urlset>").encode(charset)
    text = f"https://news.example/{path}\n".encode(charset)
    want = [f"https://news.example/{path}"]
    assert read_feed(feed, "https://news.example/f", content_type="application/rss+xml",
                     charset=charset).pages == want
    assert read_sitemap(sitemap, "https://news.example/s", charset=charset).pages == want
    assert read_text_sitemap(text, "https://news.example/t", charset=charset).pages == want


def test_a_declared_encoding_wins_over_a_default_http_charset() -> None:
    body = ('<?xml version="1.0" encoding="UTF-8"?><urlset><url><loc>https://news.example/'
            "новости</loc></url></urlset>").encode()
    assert read_sitemap(body, "https://news.example/s", charset="iso-8859-1").pages == [
        "https://news.example/новости"]


def test_sitemap_urls_google_news_included() -> None:
    listing = read_sitemap(URLSET, "https://news.example/sitemap.xml")
    assert listing.pages == ["https://news.example/s1", "https://news.example/s2",
                             "https://news.example/s1"]
    assert listing.children == [] and not listing.warnings


def test_sitemap_index_lists_its_sitemaps() -> None:
    listing = read_sitemap(INDEX, "https://news.example/index.xml")
    assert listing.pages == []
    assert listing.children == ["https://news.example/a.xml", "https://news.example/b.xml.gz",
                                "https://news.example/a.xml"]


def test_not_a_sitemap() -> None:
    with pytest.raises(SourceError, match="not a sitemap"):
        read_sitemap(RSS, "https://news.example/feed")
    with pytest.raises(SourceError, match="not well-formed"):
        read_sitemap(b"<urlset><url>", "https://news.example/s.xml")


def test_a_truncated_sitemap_keeps_the_urls_before_the_break() -> None:
    whole = urlset(*(f"https://news.example/{i}" for i in range(50)))
    cut = whole[: whole.index(b"https://news.example/31<")]
    listing = read_sitemap(cut, "https://news.example/s.xml")
    assert listing.pages == [f"https://news.example/{i}" for i in range(31)]
    (warning,) = listing.warnings
    assert "cut short" in warning and "kept the 31 URLs" in warning


def test_sitemap_entries_older_than_since_are_left_out() -> None:
    listing = read_sitemap(DATED, "https://news.example/s.xml", since=SINCE)
    assert listing.pages == ["https://news.example/new", "https://news.example/news",
                             "https://news.example/undated"]
    assert listing.older == 2
    assert len(read_sitemap(DATED, "https://news.example/s.xml").pages) == 5


def test_index_sitemaps_older_than_since_are_not_read() -> None:
    index = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
    <sitemap><loc>https://news.example/2009.xml</loc><lastmod>2009-12-31</lastmod></sitemap>
    <sitemap><loc>https://news.example/2025.xml</loc><lastmod>2025-02-01</lastmod></sitemap>
    </sitemapindex>"""
    listing = read_sitemap(index, "https://news.example/i.xml", since=SINCE)
    assert listing.children == ["https://news.example/2025.xml"] and listing.older == 1


def test_entity_expansion_bombs_are_refused() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(f'<!ENTITY {c} "{(("&" + p + ";") * 10)}">'.encode()
                       for p, c in zip("abcdefgh", "bcdefghi", strict=True))
            + b"]><urlset><url><loc>&i;</loc></url></urlset>")
    with pytest.raises(SourceError):
        read_sitemap(bomb, "https://news.example/s.xml")


def test_external_entities_are_not_read() -> None:
    xxe = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
           b"<urlset><url><loc>https://news.example/&x;</loc></url></urlset>")
    listing = read_sitemap(xxe, "https://news.example/s.xml")
    assert all("\n" not in url for url in listing.pages)


def test_plain_text_sitemaps() -> None:
    body = (b"\xef\xbb\xbfhttps://news.example/a\r\n\n# a comment\nnot a url\n"
            b"https://news.example/b c\nftp://news.example/x\nhttps://news.example/b\n")
    listing = read_text_sitemap(body, "https://news.example/sitemap.txt")
    assert listing.pages == ["https://news.example/a", "https://news.example/b"]
    assert (listing.entries, listing.skipped) == (5, 3)
    assert kind_of(body) == "text" and kind_of(URLSET) == "sitemap" and kind_of(RSS) == "feed"


def test_the_cap_on_entries_per_file() -> None:
    urls = [f"https://news.example/{i}" for i in range(30)]
    listing = read_sitemap(urlset(*urls), "https://news.example/s.xml", limit=10)
    assert listing.pages == urls[:10] and listing.capped
    text = read_text_sitemap("\n".join(urls).encode(), "https://news.example/t", limit=10)
    assert text.pages == urls[:10] and text.capped
    feed = read_feed(b"<rss version='2.0'><channel>" + b"".join(
        f"<item><link>{u}</link></item>".encode() for u in urls) + b"</channel></rss>",
        "https://news.example/f", limit=10)
    assert feed.pages == urls[:10] and feed.capped


def test_robots_txt_sitemap_lines() -> None:
    robots = (b"User-agent: *\nDisallow: /private\nSitemap: https://news.example/news.xml\n"
              b"sitemap: /relative.xml # a comment\n")
    assert robots_sitemaps(robots, "https://news.example/robots.txt") == [
        "https://news.example/news.xml", "https://news.example/relative.xml"]


def test_gzipped_files_within_the_cap() -> None:
    assert gunzipped(gzip.compress(URLSET), 10_000) == URLSET
    assert gunzipped(URLSET, 10) == URLSET  # not gzip: as it is
    with pytest.raises(SourceError, match="cap"):
        gunzipped(gzip.compress(b"\0" * 1_000_000), 10_000)
    with pytest.raises(SourceError, match="corrupt"):
        gunzipped(gzip.compress(URLSET)[:10] + b"\xff" * 20, 10_000)
    # A gzip file cut short (a broken download) gives what it holds; the reader warns.
    whole = urlset(*(f"https://news.example/{i}" for i in range(500)))
    cut = gunzipped(gzip.compress(whole)[:600], len(whole))
    assert whole.startswith(cut) and 0 < len(cut) < len(whole)
    listing = read_sitemap(cut, "https://news.example/s.xml.gz")
    assert listing.pages and "cut short" in listing.warnings[0]


def test_sniffing_feeds_and_sitemaps() -> None:
    assert looks_like_xml(RSS) and looks_like_xml(b"\n<rss version='2.0'>")
    assert looks_like_xml(b"<!-- hi --><urlset>") and looks_like_xml(gzip.compress(b"x"))
    assert not looks_like_xml(b"<!doctype html><html>")
    assert looks_like_source(b"\nhttps://news.example/a\n") and looks_like_source(RSS)
    assert not looks_like_source(b"hello https://news.example/a")


@pytest.mark.parametrize(("spec", "expected"), [
    ("2025-01-31", datetime(2025, 1, 31, tzinfo=UTC)),
    ("2025-01-31T12:00:00+02:00", datetime(2025, 1, 31, 10, tzinfo=UTC)),
    ("2d", datetime(2025, 1, 29, tzinfo=UTC)), ("36h", datetime(2025, 1, 29, 12, tzinfo=UTC)),
    ("1w", datetime(2025, 1, 24, tzinfo=UTC)), ("", None)])
def test_since_cutoff(spec: str, expected: datetime | None) -> None:
    assert since_cutoff(spec, now=datetime(2025, 1, 31, tzinfo=UTC).timestamp()) == expected


def test_since_cutoff_refuses() -> None:
    with pytest.raises(ValueError, match="not a date"):
        since_cutoff("yesterday")


def test_backoff_doubles_within_bounds() -> None:
    assert [backoff_s(n, 3600, transient=True) for n in (1, 2, 3, 10)] == [
        RETRY_FIRST_S, 2 * RETRY_FIRST_S, 4 * RETRY_FIRST_S, 3600]
    assert [backoff_s(n, 3600, transient=False) for n in (1, 2, 6, 40)] == [
        3600, 7200, 86_400, 86_400]
    assert backoff_s(5, 2 * 86_400, transient=False) == 2 * 86_400


# The streamed reader picks each entry's link as feedparser does (feedparser reads the feeds
# that are not well-formed XML): both are run on the same feeds.
_A = 'xmlns="http://www.w3.org/2005/Atom"'
FEED_SHAPES = {
    "rss rel": (
        '<rss version="2.0"><channel><item><link>/a</link></item><item><link>b</link>'
        '</item><item><link>  https://x.example/c  </link></item></channel></rss>'
    ),
    "rss xmlbase": (
        '<rss version="2.0" xml:base="https://base.example/root/"><channel><item><link>'
        'a</link></item></channel></rss>'
    ),
    "rss guid": (
        '<rss version="2.0"><channel><item><guid>https://x.example/g</guid></item><item>'
        '<guid isPermaLink="false">https://x.example/h</guid></item><item><guid>'
        'not-a-url</guid></item></channel></rss>'
    ),
    "rss atomlink": (
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
        '<atom:link rel="self" href="https://x.example/feed"/><item>'
        '<atom:link href="https://x.example/al"/></item><item>'
        '<atom:link rel="alternate" href="/rel-al"/></item></channel></rss>'
    ),
    "rss cdata": (
        '<rss version="2.0"><channel><item><link><![CDATA[https://x.example/cd?a=1&b=2]]>'
        '</link></item></channel></rss>'
    ),
    "rss amp": (
        '<rss version="2.0"><channel><item><link>https://x.example/q?a=1&amp;b=2</link>'
        '</item></channel></rss>'
    ),
    "rdf": (
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.or'
        'g/rss/1.0/">'
        '<channel rdf:about="https://x.example/"><title>t</title><link>'
        'https://x.example/</link></channel><item rdf:about="https://x.example/r1">'
        '<title>r</title><link>https://x.example/r1</link></item>'
        '<item rdf:about="https://x.example/r2"><title>r</title></item></rdf:RDF>'
    ),
    "atom basic": (
        f'<feed {_A}><entry><link href="https://x.example/1"/><id>urn:1</id></entry>'
        f'<entry><link rel="enclosure" href="https://x.example/e.mp3"/>'
        f'<link rel="alternate" type="text/html" href="/2"/></entry></feed>'
    ),
    "atom types": (
        f'<feed {_A}><entry>'
        f'<link rel="alternate" type="application/pdf" href="https://x.example/p.pdf"/>'
        f'<link rel="alternate" type="text/html" href="https://x.example/h"/></entry>'
        f'<entry>'
        f'<link rel="alternate" type="application/pdf" href="https://x.example/only.pdf"/>'
        f'</entry></feed>'
    ),
    "atom xmlbase": (
        f'<feed {_A} xml:base="https://b.example/x/"><entry xml:base="sub/">'
        f'<link href="page"/></entry><entry><link href="/abs"/></entry></feed>'
    ),
    "atom id": (
        f'<feed {_A}><entry><id>https://x.example/by-id</id></entry><entry><id>'
        f'Correct Value</id></entry><entry><id>tag:x,2020:1</id></entry></feed>'
    ),
    "atom nolink rel": (
        f'<feed {_A}><entry><link rel="related" href="https://x.example/rel"/><id>'
        f'urn:x</id></entry><entry><link rel="self" href="https://x.example/self"/>'
        f'</entry></feed>'
    ),
    "atom03": (
        '<feed version="0.3" xmlns="http://purl.org/atom/ns#"><entry>'
        '<link rel="alternate" type="text/html" href="https://x.example/03"/></entry>'
        '</feed>'
    ),
    "atom link no rel no type": (
        f'<feed {_A}><entry><link href="https://x.example/n"/>'
        f'<link href="https://x.example/n2"/></entry></feed>'
    ),
    "rss091": (
        '<rss version="0.91"><channel><item><title>x</title><link>'
        'https://x.example/091</link></item></channel></rss>'
    ),
    "rss link+guid": (
        '<rss version="2.0"><channel><item><guid>https://x.example/g</guid><link>'
        'https://x.example/l</link></item></channel></rss>'
    ),
    "rss empty link": (
        '<rss version="2.0"><channel><item><link></link><guid>https://x.example/g2</guid>'
        '</item></channel></rss>'
    ),
    "rss javascript": (
        '<rss version="2.0"><channel><item><link>javascript:alert(1)</link></item><item>'
        '<link>mailto:a@b.c</link></item></channel></rss>'
    ),
    "atom content-type xhtml": (
        f'<feed {_A}><entry>'
        f'<link rel="alternate" type="application/xhtml+xml" href="https://x.example/xh"/>'
        f'</entry></feed>'
    ),
    "rss xmlbase on item": (
        '<rss version="2.0"><channel><item xml:base="https://other.example/d/"><link>'
        'p</link></item></channel></rss>'
    ),
    "rss relative xmlbase": (
        '<rss version="2.0" xml:base="/news/"><channel><item><link>p</link></item>'
        '</channel></rss>'
    ),
    "rss two links": (
        '<rss version="2.0"><channel><item><link>https://x.example/first</link><link>'
        'https://x.example/second</link></item></channel></rss>'
    ),
    "rss link then atom": (
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><item>'
        '<link>https://x.example/t</link>'
        '<atom:link rel="alternate" href="https://x.example/a"/></item></channel></rss>'
    ),
    "atom rel alternate later": (
        f'<feed {_A}><entry><link rel="alternate" href="https://x.example/1"/>'
        f'<link rel="replies" href="https://x.example/c"/></entry></feed>'
    ),
    "rss dc": (
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><item>'
        '<dc:identifier>x</dc:identifier><link>https://x.example/dc</link></item>'
        '</channel></rss>'
    ),
    "rss guid perma True": (
        '<rss version="2.0"><channel><item><guid isPermaLink="True">'
        'https://x.example/T</guid></item><item><guid isPermaLink="FALSE">'
        'https://x.example/F</guid></item></channel></rss>'
    ),
}


@pytest.mark.parametrize("shape", FEED_SHAPES)
def test_streamed_feeds_read_as_feedparser_reads_them(shape: str) -> None:
    body = ('<?xml version="1.0" encoding="utf-8"?>' + FEED_SHAPES[shape]).encode()
    base = "https://feeds.example/dir/feed.xml"
    streamed = _stream_feed(body, base, None, None, 1000)
    assert streamed is not None
    parsed = _parse_feed(body, base, "", None, None, 1000)
    assert (streamed.pages, streamed.skipped) == (parsed.pages, parsed.skipped)
    assert streamed.pages or streamed.skipped


def test_a_feed_that_is_not_well_formed_is_read_by_feedparser() -> None:
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>A&nbsp;B</title>'
            b"<item><link>https://news.example/a</link></item>"
            b"<item><link>https://news.example/b</link></item></channel></rss>")
    assert read_feed(body, "https://news.example/f").pages == [
        "https://news.example/a", "https://news.example/b"]


# --- expansion: one function for feeds, sitemaps, indexes and sites -------------------------


@dataclass(frozen=True)
class Doc:
    final_url: str
    raw: bytes
    content_type: str = "application/xml"
    charset: str | None = None


class Files:
    """A fake web: URL → body, or an exception to raise; records every fetch."""

    def __init__(self, files: dict[str, bytes | Exception]) -> None:
        self.files = files
        self.fetched: list[str] = []

    async def __call__(self, url: str, *, robots: bool = False) -> Document:
        self.fetched.append(url)
        body = self.files.get(url, FetchUnavailable(url, "HTTP 404 Not Found", 404))
        if isinstance(body, Exception):
            raise body
        return Doc(url, body)


LIMITS = Limits(max_bytes=1_000_000, max_files=10, max_entries=50_000)


async def test_a_sitemap_index_expands_through_its_sitemaps_once_each() -> None:
    files = Files({"https://news.example/index.xml": INDEX,
                   "https://news.example/a.xml": URLSET,
                   "https://news.example/b.xml.gz": gzip.compress(URLSET.replace(b"s2", b"s3"))})
    out = await expand(files, ["https://news.example/index.xml"], LIMITS)
    assert out.urls == ["https://news.example/s1", "https://news.example/s2",
                        "https://news.example/s3"]
    assert files.fetched == list(files.files) and out.files == 3 and not out.failures
    # The cap on files read.
    capped = await expand(files, ["https://news.example/index.xml"],
                          Limits(1_000_000, 1, 50_000))
    assert capped.urls == [] and "NEWSFLOW_MAX_SITEMAPS" in capped.warnings[0]


async def test_an_index_with_a_failing_sitemap_keeps_the_others() -> None:
    files = Files({"https://news.example/index.xml": INDEX,
                   "https://news.example/b.xml.gz": gzip.compress(URLSET)})
    out = await expand(files, ["https://news.example/index.xml"], LIMITS)
    assert out.urls == ["https://news.example/s1", "https://news.example/s2"]
    (failure,) = out.failures
    assert failure.url == "https://news.example/a.xml" and "404" in failure.reason
    assert failure.source == "https://news.example/index.xml"
    assert out.read == ["https://news.example/index.xml", "https://news.example/b.xml.gz"]


async def test_two_sources_one_failing_keeps_the_other() -> None:
    files = Files({"https://news.example/rss": RSS,
                   "https://news.example/broken": SourceError("https://news.example/broken: x"),
                   "https://news.example/busy": FetchUnavailable("https://news.example/busy",
                                                                 "HTTP 503")})
    out = await expand(files, ["https://news.example/broken", "https://news.example/busy",
                               "https://news.example/rss"], LIMITS)
    assert len(out.urls) == 3
    assert [(f.url, f.transient) for f in out.failures] == [
        ("https://news.example/broken", False), ("https://news.example/busy", True)]


async def test_one_article_linked_seven_ways_is_submitted_once() -> None:
    links = ["https://news.example/story", "https://NEWS.example/story#comments",
             "https://news.example/story?utm_source=rss&utm_medium=feed",
             "https://news.example:443/story?fbclid=abc", "http://news.example/story",
             "https://www.news.example/story", "https://news.example/story/"]
    feed = ("<rss version='2.0'><channel><title>t</title>" + "".join(
        f"<item><link>{u}</link></item>" for u in links) + "</channel></rss>").encode()
    out = await expand(Files({"https://news.example/rss": feed}),
                       ["https://news.example/rss"], LIMITS)
    # The first link only: case, default port, fragment and tracking parameters do not count
    # (the article id's canonical URL), nor, within a command, the scheme, www. and a trailing
    # slash.
    assert out.urls == [links[0]] and out.duplicates == 6


def test_same_page_keeps_apart_what_differs() -> None:
    assert same_page("http://www.news.example/story/") == same_page("https://news.example/story")
    assert same_page("https://news.example/") == same_page("https://www.news.example")
    assert same_page("https://news.example/story") != same_page("https://news.example/story2")
    assert same_page("https://news.example/a?id=1") != same_page("https://news.example/a?id=2")
    assert same_page("https://news.example/a") != same_page("https://other.example/a")


async def test_the_cap_holds_across_files_and_sources() -> None:
    files = Files({f"https://news.example/{n}.xml": urlset(
        *(f"https://news.example/{n}/{i}" for i in range(8))) for n in range(3)})
    out = await expand(files, list(files.files), Limits(1_000_000, 10, 20))
    assert len(out.urls) == 20 and out.capped
    assert any("NEWSFLOW_MAX_ENTRIES_PER_SOURCE" in w for w in out.warnings)


async def test_a_feed_with_no_links_says_so() -> None:
    feed = b"<rss version='2.0'><channel><item><guid isPermaLink='false'>1</guid></item>" \
           b"<item><title>x</title></item></channel></rss>"
    out = await expand(Files({"https://news.example/rss": feed}), ["https://news.example/rss"],
                       LIMITS)
    assert out.urls == [] and out.skipped == 2
    assert "lists 2 entries, none with a usable link" in out.warnings[0]


async def test_deferred_sitemaps_are_not_fetched_until_due() -> None:
    files = Files({"https://news.example/index.xml": INDEX,
                   "https://news.example/a.xml": URLSET,
                   "https://news.example/b.xml.gz": gzip.compress(URLSET)})
    out = await expand(files, ["https://news.example/index.xml"], LIMITS,
                       deferred={"https://news.example/a.xml": 4e9,
                                 "https://news.example/b.xml.gz": 1.0})
    assert out.deferred == ["https://news.example/a.xml"]
    assert "https://news.example/a.xml" not in files.fetched and len(out.urls) == 2


async def test_a_site_is_read_through_its_robots_txt_sitemaps() -> None:
    files = Files({
        "https://news.example/robots.txt":
            b"User-agent: *\nSitemap: https://news.example/news.xml\n",
        "https://news.example/news.xml": urlset("https://news.example/n1"),
        "https://other.example/robots.txt": b"User-agent: *\nDisallow:\n",
        "https://other.example/sitemap.xml": urlset("https://other.example/o1"),
    })
    out = await expand(files, [], LIMITS, sites=["https://news.example",
                                                 "https://other.example/some/page"])
    assert out.urls == ["https://news.example/n1", "https://other.example/o1"]
    assert any("names no sitemap; trying https://other.example/sitemap.xml" in w
               for w in out.warnings)


async def test_gzipped_plain_text_sitemap() -> None:
    body = gzip.compress(b"https://news.example/a\nhttps://news.example/b\n")
    out = await expand(Files({"https://news.example/s.txt.gz": body}),
                       ["https://news.example/s.txt.gz"], LIMITS)
    assert out.urls == ["https://news.example/a", "https://news.example/b"]


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


async def test_xml_fetch_keeps_the_http_charset_for_the_reader() -> None:
    body = "<rss><channel><item><link>https://news.example/новости</link></item></channel></rss>"
    fetched = await get(lambda _: streamed(
        200, {"Content-Type": "application/rss+xml; charset=KOI8-R"}, body.encode("koi8-r")),
        kind=XML)
    assert fetched.charset == "KOI8-R"
    assert read_feed(fetched.raw, fetched.final_url, content_type=fetched.content_type,
                     charset=fetched.charset).pages == ["https://news.example/новости"]


async def test_xml_fetch_takes_a_plain_text_sitemap_but_not_prose() -> None:
    text = b"https://news.example/a\nhttps://news.example/b\n"
    fetched = await get(lambda _: streamed(200, {"Content-Type": "text/plain"}, text), kind=XML)
    assert fetched.raw == text
    with pytest.raises(WrongContentType, match="does not look like XML"):
        await get(lambda _: streamed(200, {"Content-Type": "text/plain"}, b"Hello, reader."),
                  kind=XML)


def test_a_truncated_feed_keeps_its_entries_before_the_break_with_a_warning() -> None:
    whole = b"<rss version='2.0'><channel>" + b"".join(
        f"<item><link>https://news.example/{i}</link></item>".encode() for i in range(20)
    ) + b"</channel></rss>"
    listing = read_feed(whole[: whole.index(b"https://news.example/12<")],
                        "https://news.example/f")
    assert listing.pages == [f"https://news.example/{i}" for i in range(12)]
    assert "cut short or malformed" in listing.warnings[0]


@pytest.mark.parametrize(("site", "robots"), [
    ("https://news.example", "https://news.example/robots.txt"),
    ("http://news.example:8080/a/page?x=1#y", "http://news.example:8080/robots.txt"),
    ("news.example", "https://news.example/robots.txt")])
def test_robots_url_of_a_site(site: str, robots: str) -> None:
    assert robots_url(site) == robots


def test_entities_of_a_dtd_not_loaded_are_read_as_html_characters() -> None:
    # RSS 0.91 names the Netscape DTD for HTML entities; it is never fetched.
    feed = (b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS '
            b'0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91">'
            b"<channel><title>caf&eacute;</title><item><link>https://news.example/caf&eacute;?"
            b"a=1&amp;b=2</link></item></channel></rss>")
    assert read_feed(feed, "https://news.example/f").pages == [
        "https://news.example/café?a=1&b=2"]
    sitemap = (b'<?xml version="1.0"?><!DOCTYPE urlset SYSTEM "http://news.example/s.dtd">'
               b"<urlset><url><loc>https://news.example/na&iuml;ve</loc></url></urlset>")
    assert read_sitemap(sitemap, "https://news.example/s").pages == ["https://news.example/naïve"]
