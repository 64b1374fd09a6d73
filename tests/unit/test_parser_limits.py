"""Pages the parser cannot read as they are: too many elements, nesting deeper than libxml2's."""

import dataclasses
import time
from pathlib import Path

import pytest

from services.parser.extract import extract_article
from services.parser.limits import (
    MAX_DEPTH,
    TooManyElements,
    count_elements,
    extract_page,
    flatten,
    max_depth,
)
from shared.errors import PermanentError
from shared.messages import ArticleParsed

FIXTURES = Path(__file__).parent.parent / "fixtures"
SENTENCES = " ".join(f"Sentence {i} of the article says what happened in Dushanbe today."
                     for i in range(40))


def test_elements_are_counted_by_their_opening_tags() -> None:
    assert count_elements("<html><body><p>a < b</p><br/><!-- <x> --></body></html>") == 5
    assert count_elements("") == 0


def test_a_page_of_too_many_elements_is_refused_before_it_is_parsed() -> None:
    page = "<html><body><article>" + "<b>x</b>" * 1_000_000 + "</article></body></html>"
    started = time.monotonic()
    with pytest.raises(TooManyElements, match="too many elements: 1,000,003"):
        extract_page(page, None, 200_000)
    assert time.monotonic() - started < 5  # a parse of it takes ~10 s and 1.6 GB
    assert issubclass(TooManyElements, PermanentError)


def test_100000_nested_divs_keep_their_text() -> None:
    page = ("<html><head><title>A deep page</title></head><body><article><h1>A deep page</h1>"
            + "<div>" * 100_000 + f"<p>{SENTENCES}</p>" + "</div>" * 100_000
            + "</article></body></html>")
    assert max_depth(page) > 100_000
    article = extract_page(page, "https://example.com/deep", 200_000)
    assert article.words >= 400 and "Sentence 39 of the article" in article.text


def test_text_at_every_level_of_deep_nesting_is_kept_in_order() -> None:
    page = ("<html><body><article>"
            + "".join(f"<div>Level {i} of the story is told here." for i in range(20_000))
            + "</div>" * 20_000 + "</article></body></html>")
    article = extract_page(page, None, 200_000)
    assert "Level 0 of the story" in article.text and "Level 19999 of the story" in article.text
    assert article.text.index("Level 10 of") < article.text.index("Level 15000 of")


def test_flattening_removes_only_the_tags_below_the_depth() -> None:
    page = "<section>" + "<div><span>x</span>" * 150 + "</div>" * 150 + "</section>"
    flat = flatten(page)
    assert max_depth(flat) == MAX_DEPTH
    assert flat.count("x") == 150 and flat.startswith("<section><div><span>x</span>")
    assert flat.count("<div>") == flat.count("</div>") == MAX_DEPTH - 1


def test_unclosed_and_self_closing_tags_do_not_look_deep() -> None:
    ordinary = "<ul>" + "<li>item<p>para<br>" * 5_000 + "</ul><div><img src=x/></div>"
    assert max_depth(ordinary) == 1
    # An end tag closes what was left open inside its element, as the parser does.
    sloppy = "<div>" + "<div><span><b>x</div>" * 5_000 + "</div>"
    assert max_depth(sloppy) == 4


@pytest.mark.parametrize("name", ["article.html", "article_hard.html"])
def test_ordinary_pages_are_extracted_as_before(name: str) -> None:
    page = (FIXTURES / name).read_text(encoding="utf-8")
    assert max_depth(page) < MAX_DEPTH and flatten(page) == page
    assert extract_page(page, "https://example.com/a", 200_000) == extract_article(
        page, "https://example.com/a")


def test_the_element_guard_can_be_turned_off() -> None:
    page = f"<html><body><article><p>{SENTENCES}</p>" + "<i></i>" * 50 + "</article></body></html>"
    assert extract_page(page, None, 0).words >= 400
    with pytest.raises(TooManyElements):
        extract_page(page, None, 10)


def test_a_nul_in_a_json_ld_headline_never_reaches_the_store() -> None:
    # As found on a page: the headline with an escaped NUL, which PostgreSQL text cannot hold.
    ld = '{"@type": "NewsArticle", "headline": "Head\\u0000line of the story"}'
    page = (f'<html><head><script type="application/ld+json">{ld}</script></head><body>'
            f"<article><h1>Headline of the story</h1><p>{SENTENCES}</p></article></body></html>")
    extraction = extract_page(page, "https://example.com/nul", 200_000)
    parsed = ArticleParsed(id="nul", **dataclasses.asdict(extraction))
    assert "\x00" not in parsed.model_dump_json().replace("\\u0000", "\x00")
    assert parsed.words == extraction.words
