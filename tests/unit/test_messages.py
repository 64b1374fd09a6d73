"""The message contracts: ids, compression on the wire, versions, bad input."""

import base64
import json
import zlib

import pytest
from pydantic import ValidationError

from shared.messages import (
    MAX_HTML_BYTES,
    ArticleEnriched,
    ArticleFetched,
    ArticleParsed,
    ArticleSubmitted,
    article_id,
    canonical_url,
)


def test_canonical_url_drops_what_does_not_identify_the_page() -> None:
    assert canonical_url("HTTPS://Example.COM:443/a/b?utm_source=x&id=3&fbclid=y#top") == (
        "https://example.com/a/b?id=3"
    )
    assert canonical_url("http://example.com:8080") == "http://example.com:8080/"
    # Never raises for a string: the dead letters label even a refused URL with its id.
    assert canonical_url("http://example.com:99999/a") == "http://example.com/a"


def test_article_id_is_stable_across_spellings_of_one_url() -> None:
    assert article_id("https://example.com/a?utm_medium=rss") == article_id(
        "https://EXAMPLE.com/a#comments"
    )
    assert article_id("https://example.com/a") != article_id("https://example.com/b")
    assert article_id(html="<p>x</p>") == article_id(html="<p>x</p>")
    with pytest.raises(ValueError, match="url or html"):
        article_id()


def test_submitted_gets_an_id_from_its_url_or_its_html() -> None:
    by_url = ArticleSubmitted.model_validate({"url": "https://example.com/a"})
    assert by_url.id == article_id("https://example.com/a")
    by_html = ArticleSubmitted.model_validate({"html": "<html>x</html>"})
    assert by_html.id == article_id(html="<html>x</html>")
    with pytest.raises(ValidationError, match="url or html"):
        ArticleSubmitted.model_validate({})


@pytest.mark.parametrize("url", ["ftp://example.com/a", "javascript:alert(1)", "example.com"])
def test_submitted_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(ValidationError, match="not an http"):
        ArticleSubmitted(url=url)


def test_html_is_compressed_on_the_wire_and_plain_in_python() -> None:
    page = "<p>Dushanbe and Tehran</p>" * 2000
    event = ArticleFetched(id="a", html=page)
    wire = json.loads(event.model_dump_json())
    assert wire["html"].startswith("zlib:")
    assert len(wire["html"]) < len(page) / 10
    assert ArticleFetched.model_validate_json(event.model_dump_json()).html == page


def test_a_zlib_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b"a" * (MAX_HTML_BYTES + 10), 9)
    with pytest.raises(ValidationError, match="byte cap"):
        ArticleFetched(id="a", html="zlib:" + base64.b64encode(bomb).decode())


def test_newer_schema_versions_are_refused_with_a_reason() -> None:
    with pytest.raises(ValidationError, match="unsupported schema_version 2"):
        ArticleSubmitted.model_validate({"schema_version": 2, "url": "https://example.com/"})


def test_unknown_fields_from_newer_writers_are_ignored() -> None:
    event = ArticleSubmitted.model_validate({"url": "https://example.com/", "colour": "red"})
    assert not hasattr(event, "colour")


def test_traced_stamps_a_stage_without_changing_the_event() -> None:
    event = ArticleSubmitted(url="https://example.com/")
    trace = event.traced("fetched")
    assert set(trace) == {"fetched"} and event.trace == {}
    assert trace["fetched"].tzinfo is not None


def test_reading_time_follows_the_word_count() -> None:
    assert ArticleParsed(id="a", words=0).reading_minutes == 0
    assert ArticleParsed(id="a", words=40).reading_minutes == 1
    assert ArticleParsed(id="a", words=1150).reading_minutes == 5
    assert json.loads(ArticleParsed(id="a", words=460).model_dump_json())["reading_minutes"] == 2
    # A reader of an older or newer writer ignores it on input: it is derived.
    assert ArticleParsed.model_validate({"id": "a", "words": 230, "reading_minutes": 99}
                                        ).reading_minutes == 1


# --- bad input is refused at once, with its reason ---------------------------------------------


@pytest.mark.parametrize(("fields", "where"), [
    ({"url": 123}, "url"), ({"url": ["https://example.com/"]}, "url"),
    ({"url": {"a": 1}}, "url"), ({"html": 5}, "html"), ({"html": ["<p>x</p>"]}, "html"),
    ({"url": "https://example.com/", "html": 5}, "html"),
])
def test_submitted_refuses_wrong_types_as_invalid_not_as_a_crash(
    fields: dict[str, object], where: str
) -> None:
    with pytest.raises(ValidationError, match="valid string") as refused:
        ArticleSubmitted.model_validate(fields)
    assert [e["loc"] for e in refused.value.errors()] == [(where,)]


@pytest.mark.parametrize("url", [
    "http://xn--zz--.test/", "https://xn--a.example/", "http://exa\u200bmple\u0000.com/",
    "http://ex ample.com/\x00", "https://example.com:99999/", "http://a.test/a\nb",
])
def test_submitted_refuses_urls_no_fetch_could_reach(url: str) -> None:
    with pytest.raises(ValidationError, match=r"invalid host name|control character|not an http"):
        ArticleSubmitted.model_validate_json(json.dumps({"url": url}))


def test_submitted_accepts_international_and_plain_host_names() -> None:
    for url in ("https://bücher.example/a", "https://xn--bcher-kva.example/a",
                "http://my_host.example/", "http://127.0.0.1:8080/", "http://[::1]/"):
        assert ArticleSubmitted(url=url).url == url


def test_a_submitted_id_is_ignored_the_id_is_derived() -> None:
    taken = article_id("https://example.com/victim")
    by_url = ArticleSubmitted.model_validate({"id": taken, "url": "https://example.com/other"})
    assert by_url.id == article_id("https://example.com/other")
    by_html = ArticleSubmitted.model_validate({"id": taken, "html": "<p>mine</p>"})
    assert by_html.id == article_id(html="<p>mine</p>")
    # On the wire too, and the same id whichever way it is sent.
    wire = json.dumps({"id": taken, "url": "https://example.com/other", "html": "<p>x</p>"})
    assert ArticleSubmitted.model_validate_json(wire).id == article_id(
        "https://example.com/other")


def test_credentials_are_stripped_from_urls_and_ids_do_not_depend_on_them() -> None:
    event = ArticleSubmitted(url="https://admin:s3cret@example.com/a?x=1")
    assert event.url == "https://example.com/a?x=1"
    assert event.id == article_id("https://example.com/a?x=1")
    fetched = ArticleFetched(id="a", url="https://u:p@example.com/", html="<p/>",
                             final_url="https://u:p@example.com/b")
    assert (fetched.url, fetched.final_url) == ("https://example.com/", "https://example.com/b")
    parsed = ArticleParsed(id="a", canonical_url="https://u@example.com/c",
                           image="https://u:p@img.example/i.png")
    assert (parsed.canonical_url, parsed.image) == ("https://example.com/c",
                                                    "https://img.example/i.png")
    assert "s3cret" not in event.model_dump_json()


def test_nul_characters_are_removed_from_every_text_with_a_logged_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire = json.dumps({
        "id": "a\x00b", "title": "Head\x00line", "text": "Body\x00", "authors": ["A\x00"],
        "entities": [{"name": "Te\x00hran", "type": "place"}], "keywords": ["k\x00"],
        "trace": {"parsed\x00": "2026-01-01T00:00:00Z"},
    })
    with caplog.at_level("WARNING", logger="newsflow.messages"):
        event = ArticleEnriched.model_validate_json(wire)
    assert "\x00" not in event.model_dump_json().replace("\\u0000", "\x00")
    assert (event.id, event.title, event.text, event.authors) == ("ab", "Headline", "Body", ["A"])
    assert event.entities[0].name == "Tehran" and set(event.trace) == {"parsed"}
    assert "removed NUL characters from id, title, text, authors" in caplog.text


def test_an_id_of_unbounded_length_is_refused() -> None:
    with pytest.raises(ValidationError, match="id longer than"):
        ArticleParsed(id="x" * 10_000)
