"""Article extraction: the reference page, its hard variant, and each field rule."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest
import trafilatura

from services.parser.boilerplate import (
    clean_paragraphs,
    cut_at_paywall,
    drop_closing_fragments,
    drop_closing_prompts,
    drop_other_articles,
    is_closing_prompt,
    is_teaser_heading,
)
from services.parser.bylines import clean_credits
from services.parser.extract import (
    Extraction,
    clean_authors,
    extract_article,
    iso_639_1,
    parse_date,
    parse_html,
    strip_site_suffix,
)
from shared.errors import PermanentError
from shared.messages import ArticleContent, ArticleParsed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))

BODY = "<p>" + " ".join(["The council met on Tuesday to discuss the new budget."] * 8) + "</p>"


def page(head: str = "", body: str = BODY, lang: str = "en") -> str:
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">{head}</head>'
            f"<body><article><h1>Budget talks</h1>{body}</article></body></html>")


def check_reference(extraction: Extraction) -> None:
    assert extraction.title == EXPECTED["title"]
    assert extraction.site_name == EXPECTED["site_name"]
    assert extraction.published is not None
    assert extraction.published.date().isoformat() == EXPECTED["published"]
    assert extraction.language == EXPECTED["language"]
    assert extraction.text.startswith(EXPECTED["body_first_sentence"])
    for unwanted in EXPECTED["body_must_not_contain"]:
        assert unwanted not in extraction.text, unwanted
    assert extraction.canonical_url == EXPECTED["url"]
    # The credits line is kept, once.
    assert extraction.text.count("Picture: Emomali Rahom") == 1
    assert extraction.text.count("Sources: CommonSpace.eu") == 1
    assert "©" not in extraction.text
    assert 380 < extraction.words < 450


@pytest.mark.parametrize("name", ["article.html", "article_hard.html"])
def test_reference_pages(name: str) -> None:
    html = (FIXTURES / name).read_text(encoding="utf-8")
    check_reference(extract_article(html, EXPECTED["url"]))


def test_hard_variant_really_hides_the_boilerplate_in_the_article() -> None:
    """The hard page is only hard if plain trafilatura keeps the boilerplate."""
    html = (FIXTURES / "article_hard.html").read_text(encoding="utf-8")
    plain = trafilatura.extract(html) or ""
    assert "International Claims Commission" in plain
    assert plain.count("Picture: Emomali Rahom") == 2 or "Subscribe" in plain


def test_hard_variant_people_from_json_ld_graph() -> None:
    html = (FIXTURES / "article_hard.html").read_text(encoding="utf-8")
    assert extract_article(html).authors == ["Jane Doe"]


def test_fields_fit_the_message() -> None:
    html = (FIXTURES / "article.html").read_text(encoding="utf-8")
    extraction = extract_article(html, EXPECTED["url"])
    parsed = ArticleParsed(id="x", url=EXPECTED["url"], **dataclasses.asdict(extraction))
    assert parsed.title == EXPECTED["title"]
    assert {f.name for f in dataclasses.fields(Extraction)} <= set(ArticleContent.model_fields)
    assert "\n\n" in extraction.text and "\n\n\n" not in extraction.text


@pytest.mark.parametrize(("title", "site", "url", "want"), [
    ("Budget talks | Example News", "Example News", None, "Budget talks"),
    ("Budget talks - Example News", "Example News", None, "Budget talks"),
    ("Budget talks – example.com", None, "https://www.example.com/a", "Budget talks"),
    ("Example News | Budget talks", "Example News", None, "Budget talks"),
    ("Budget talks | Politics | Example News", "Example News", None, "Budget talks | Politics"),
    ("Left - right: a budget talk", "Example News", None, "Left - right: a budget talk"),
])
def test_title_suffix(title: str, site: str | None, url: str | None, want: str) -> None:
    assert strip_site_suffix(title, site, url) == want


def test_title_from_page_strips_site() -> None:
    head = "<title>Budget talks | Daily Planet</title>" \
           '<meta property="og:site_name" content="Daily Planet">'
    assert extract_article(page(head)).title == "Budget talks"


@pytest.mark.parametrize(("closing", "want"), [
    ("<p>This article is for subscribers only. Subscribe to continue reading.</p>", True),
    ("<p>Il vous reste 57% de cet article à lire. La suite est réservée aux abonnés.</p>", True),
    ("<p>The streaming service raised its prices for subscribers in May.</p>", False),
])
def test_paywall_flag_when_the_text_says_it_is_cut(closing: str, want: bool) -> None:
    extraction = extract_article(page(body=BODY + closing))
    assert extraction.paywalled is want
    assert ("raised its prices" in extraction.text) is not want


@pytest.mark.parametrize(("raw", "want"), [
    (["By Jane Doe"], ["Jane Doe"]),
    (["Von Hans Müller und Eva Schmidt"], ["Hans Müller", "Eva Schmidt"]),
    (["Jane Doe (jane.doe@example.com)"], ["Jane Doe"]),
    (["jane@example.com, John Smith"], ["John Smith"]),
    (["Daily Planet", "Jane Doe", "dpa", "Reuters"], ["Jane Doe"]),
    (["Jane Doe; jane doe"], ["Jane Doe"]),
    (["https://example.com/authors/jane"], []),
])
def test_author_cleaning(raw: list[str], want: list[str]) -> None:
    assert clean_authors(raw, {"dailyplanet"}) == want


def test_an_entry_the_size_of_a_paragraph_names_no_author() -> None:
    # A blob of script caught as a byline: its patterns would cost seconds, and it is no credit.
    assert clean_authors(["By Jane Doe" + ", x" * 600]) == []
    assert clean_authors(["By Jane Doe" + ", x" * 6]) == ["Jane Doe"]


def test_json_ld_graph_and_organisation_author() -> None:
    ld = {"@context": "https://schema.org", "@graph": [
        {"@type": "WebPage", "name": "Page", "inLanguage": "fr-FR"},
        {"@type": ["NewsArticle"], "headline": "Budget talks", "inLanguage": "de-DE",
         "datePublished": "2024-03-05T10:00:00+01:00", "dateModified": "2024-03-06T08:00:00Z",
         "author": [{"@type": "Person", "name": "Jane Doe"},
                    {"@type": "Organization", "name": "Daily Planet"}],
         "publisher": {"@type": "Organization", "name": "Daily Planet"},
         "image": {"@type": "ImageObject", "url": "/img/a.jpg"},
         "keywords": "budget, council", "isAccessibleForFree": False},
    ]}
    head = f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    e = extract_article(page(head), "https://planet.example/news/1")
    assert e.title == "Budget talks"
    assert e.authors == ["Jane Doe"]
    assert e.published == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    assert e.modified == datetime(2024, 3, 6, 8, 0, tzinfo=UTC)
    assert e.language == "de"
    assert e.site_name == "Daily Planet"
    assert e.image == "https://planet.example/img/a.jpg"
    assert e.tags == ["budget", "council"]
    assert e.paywalled is True


def test_dates_are_aware_and_never_future() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    naive = parse_date("2024-05-03 15:47:42", now)
    assert naive == datetime(2024, 5, 3, 15, 47, 42, tzinfo=UTC)
    assert parse_date("2024-05-03T15:47:42.389123456+0200", now) == datetime(
        2024, 5, 3, 13, 47, 42, 389123, tzinfo=UTC)
    assert parse_date("Fri, 03 May 2024 15:47:42 GMT", now) == datetime(
        2024, 5, 3, 15, 47, 42, tzinfo=UTC)
    assert parse_date("2025-06-01T00:00:00Z", now) is None
    assert parse_date("not a date", now) is None


def test_future_published_falls_back_to_next_source() -> None:
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    head = (f'<meta property="article:published_time" content="{future}">'
            '<meta name="date" content="2023-02-01">')
    e = extract_article(page(head))
    assert e.published == datetime(2023, 2, 1, tzinfo=UTC)
    assert e.published.tzinfo is not None


@pytest.mark.parametrize(("raw", "want"), [
    ("en-US", "en"), ("de_DE", "de"), ("fr", "fr"), ("x-default", None), ("", None), (None, None),
])
def test_language_codes(raw: str | None, want: str | None) -> None:
    assert iso_639_1(raw) == want


def test_language_from_og_locale_when_html_has_none() -> None:
    html = page('<meta property="og:locale" content="pt_BR">', lang="")
    assert extract_article(html).language == "pt"


@pytest.mark.parametrize("html", [
    "",
    "   ",
    "<html><head><title>Nothing</title></head><body></body></html>",
    "<html><body><nav><a href='/'>Home</a></nav></body></html>",
])
def test_no_article_text_is_permanent(html: str) -> None:
    with pytest.raises(PermanentError, match=r"\S"):
        extract_article(html)


@pytest.mark.parametrize("html", [
    page(),
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n' + page(),
    page(body=BODY.replace("budget", "bud\x0cget")),  # a control character XML forbids
    page(body=BODY + "<p>\ufffe</p>"),
    '<html lang="de"/>\n<head><title>Self-closed</title></head><body>' + BODY + "</body>",
    "<div>" + BODY + "</div>",  # no <html>: trafilatura's doubts about such input apply
    "<html></html>",  # nothing inside: load_html has the last word
])
def test_pages_parse_as_trafilatura_parses_them(html: str) -> None:
    ours, theirs = parse_html(html), trafilatura.utils.load_html(html)
    assert (ours is None) == (theirs is None)
    if ours is not None and theirs is not None:
        assert lxml.html.tostring(ours) == lxml.html.tostring(theirs)


def test_a_lone_surrogate_costs_a_character_not_the_rest_of_the_paragraph() -> None:
    # Text decoded badly upstream; trafilatura's own parse of the str stops at the surrogate.
    html = page(body="<p>Budget \ud800 talks went on into the night at the city council.</p>")
    assert "talks went on into the night" in lxml.html.tostring(parse_html(html), encoding=str)


def test_odd_charset_and_markup() -> None:
    # An XML declaration with an encoding (lxml refuses it on str input), a legacy charset
    # declaration, unclosed paragraphs, entities and a stray NUL character.
    html = ('<?xml version="1.0" encoding="ISO-8859-1"?>\n'
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
            "<title>Caf&eacute; prices rise</title></head><body><div>"
            "<p>Caf\u00e9 owners in Z\u00fcrich said prices rose by 5 % this year &amp; more."
            " They blamed energy costs and rent, which doubled since last spring.\x00"
            "<p>Customers were unhappy but kept coming, according to the survey of 200 people,"
            " which the association published on Monday in its annual report."
            "</div></body></html>")
    e = extract_article(html)
    assert e.title == "Café prices rise"
    assert "Café owners in Zürich" in e.text
    assert "& more" in e.text
    assert e.text.count("\n\n") == 1


def test_clean_paragraphs() -> None:
    lines = ["Real text here.", "Popular", "Lesen Sie auch", "Sign up for our newsletter",
             "Real text here.", "© 2024 Example", "Second paragraph."]
    assert clean_paragraphs(lines) == ["Real text here.", "Second paragraph."]
    assert is_teaser_heading("Mehr zum Thema Ukraine")
    assert is_teaser_heading("Czytaj więcej")
    assert not is_teaser_heading("Popular uprising spreads to the capital")


@pytest.mark.parametrize("line", [
    "Externer Inhalt nicht verfügbar",
    "Ein Klick für den Datenschutz",
    "Ich bin damit einverstanden, dass mir der externe Inhalt angezeigt wird. Damit können "
    "personenbezogene Daten an Drittplattformen übermittelt werden.",
    "This external content cannot be shown until you accept the provider's cookies.",
])
def test_what_stands_in_for_a_blocked_embed_is_not_text(line: str) -> None:
    assert clean_paragraphs(["Real text here.", line]) == ["Real text here."]


def test_news_about_privacy_settings_is_text() -> None:
    line = "Facebook changed its privacy settings again on Monday, the company said."
    assert clean_paragraphs([line]) == [line]


@pytest.mark.parametrize("heading", ["【関連記事】", "■関連キーワード", "おすすめ情報", "相关新闻",
                                     "관련기사"])
def test_teaser_headings_in_chinese_japanese_and_korean(heading: str) -> None:
    assert is_teaser_heading(heading)
    assert clean_paragraphs(["本文。", heading]) == ["本文。"]


def test_kana_keep_their_voicing_marks_when_matched() -> None:
    # "キーワード" folded to "キーワート" once: a teaser heading with voiced kana never matched.
    assert not is_teaser_heading("関連キーワート")


@pytest.mark.parametrize(("head", "want"), [
    ('<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Budget talks",'
     ' "isAccessibleForFree": "False"}</script>', True),
    ('<script type="application/ld+json">{"@type": "NewsArticle", "isAccessibleForFree": true,'
     ' "hasPart": {"@type": "WebPageElement", "isAccessibleForFree": false}}</script>', True),
    ('<script type="application/ld+json">{"@type": "NewsArticle", "isAccessibleForFree": true}'
     "</script>", False),
    ('<meta property="article:content_tier" content="locked">', True),
    ('<meta property="article:content_tier" content="free">', False),
    ('<meta itemprop="isAccessibleForFree" content="false">', True),
    ("", False),
])
def test_paywall_flag(head: str, want: bool) -> None:
    assert extract_article(page(head)).paywalled is want


@pytest.mark.parametrize(("raw", "want"), [
    (["Jane Doe and John Smith"], ["Jane Doe", "John Smith"]),
    (["Jane Doe, John Smith"], ["Jane Doe", "John Smith"]),
    (["JANE DOE"], ["Jane Doe"]),
    (["신현주 기자"], ["신현주"]),
    (["Jane Doe Reporter"], ["Jane Doe"]),
    (["Capital Von Jemima Kelly"], ["Jemima Kelly"]),
    (["Ursula von der Leyen"], ["Ursula von der Leyen"]),
    (["mdr.de", "Deutsche Welle (www.dw.com)", "example.com, Frankfurt, Germany"], []),
    (["Jane Doe, professor of law at Example University, Example.com"], ["Jane Doe"]),
    (["Red", "Agenturen", "MM-Redaktion"], []),
    (["Daily Planet Thüringen"], []),
    (["Marcel Sommer Sendung hr-INFO"], []),
])
def test_author_rules(raw: list[str], want: list[str]) -> None:
    assert clean_authors(raw, {"dailyplanet", "daily", "planet"}) == want


def test_authors_fall_back_when_the_first_source_names_no_person() -> None:
    ld = {"@type": "NewsArticle", "author": {"@type": "Person", "name": "Daily Planet"}}
    head = (f'<script type="application/ld+json">{json.dumps(ld)}</script>'
            '<meta property="og:site_name" content="Daily Planet">'
            '<meta name="author" content="jane@planet.example">'
            '<meta name="twitter:misc:Written by" content="Jane Doe">')
    assert extract_article(page(head)).authors == ["Jane Doe"]


def test_shown_byline_below_the_headline_when_no_metadata_names_authors() -> None:
    html = ('<html><body><aside><h2>More news</h2><p>By Teaser Writer</p></aside>'
            f'<article><h1>Budget talks</h1><div class="meta">Text Size</div>'
            f'<p class="x">Von: Jane Doe</p>{BODY}</article></body></html>')
    assert extract_article(html).authors == ["Jane Doe"]


@pytest.mark.parametrize(("credit", "want"), [
    ("dpa", []),
    ("Von AFP und Reuters", []),
    ("The Associated Press", []),
    ("Daily Planet", ["Jane Doe"]),  # the site's own name: the byline shown is the author's
    ("", ["Jane Doe"]),
])
def test_a_wire_story_takes_no_author_from_further_down_the_page(credit: str,
                                                                  want: list[str]) -> None:
    head = '<meta property="og:site_name" content="Daily Planet">' \
           f'<meta name="author" content="{credit}">'
    assert extract_article(page(head, f'<p class="x">Von: Jane Doe</p>{BODY}')).authors == want


def test_links_to_profile_pages_name_the_authors() -> None:
    byline = ('<p>von <a href="/autoren/name/jane-doe">Dr. Jane Doe</a> und'
              ' <a href="https://example.com/author/john-roe/">John Roe</a></p>')
    html = (f'<html><body><article><h1>Budget talks</h1><p><a href="/authors/">Our Authors</a>'
            f'</p>{byline}{BODY}</article></body></html>')
    assert extract_article(html).authors == ["Dr. Jane Doe", "John Roe"]


def test_a_label_alone_names_no_author() -> None:
    assert extract_article(page(body=f'<div>Text Size</div><p>By the way</p>{BODY}')).authors == []


@pytest.mark.parametrize("where", ["top", "bottom"])
def test_signature_line_names_the_authors_and_leaves_the_text(where: str) -> None:
    signature = "<p><strong>Jane Doe/John Roe</strong></p>"
    ld = {"@type": "NewsArticle", "author": {"@type": "Person", "name": "Site Admin"}}
    head = f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    body = signature + BODY if where == "top" else BODY + signature
    extraction = extract_article(page(head, body))
    assert extraction.authors == ["Jane Doe", "John Roe"]
    assert "Doe" not in extraction.text


@pytest.mark.parametrize("line", ["Key Points:", "Sources", "Read the full report"])
def test_a_bold_heading_is_no_signature(line: str) -> None:
    extraction = extract_article(page(body=f"<p><strong>{line}</strong></p>{BODY}"))
    assert extraction.authors == []


def test_author_by_graph_reference() -> None:
    ld = {"@graph": [
        {"@type": "NewsArticle", "headline": "Budget talks", "author": {"@id": "#jane"}},
        {"@type": "Person", "@id": "#jane", "name": "Jane Doe"},
    ]}
    head = f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    assert extract_article(page(head)).authors == ["Jane Doe"]


def test_title_drops_a_section_label_another_source_lacks() -> None:
    head = ('<script type="application/ld+json">{"@type": "NewsArticle",'
            ' "headline": "Budget talks stall | Politics"}</script>'
            '<meta property="og:title" content="Budget talks stall">')
    assert extract_article(page(head)).title == "Budget talks stall"


@pytest.mark.parametrize(("tag", "want"), [
    ("Budget talks stall in council | Daily Planet", "Council fails to agree a budget"),
    ("Council fails to agree a budget | Daily Planet", "Budget talks stall in council"),
    ("Daily Planet: news from the city", "Budget talks stall in council"),
])
def test_title_og_when_the_title_tag_repeats_the_json_ld_headline(tag: str, want: str) -> None:
    head = ('<script type="application/ld+json">{"@type": "NewsArticle",'
            ' "headline": "Budget talks stall in council"}</script>'
            f'<meta property="og:title" content="Council fails to agree a budget">'
            f'<meta property="og:site_name" content="Daily Planet"><title>{tag}</title>')
    assert extract_article(page(head)).title == want


def test_ld_body_drops_paragraphs_the_publisher_body_lacks() -> None:
    sentences = [f"Council member {n} said the budget for the {n}th district would grow next year."
                 for n in range(1, 13)]
    teaser = "Read our guide to the best holiday destinations in the whole of Europe this summer."
    body = "".join(f"<p>{s}</p>" for s in sentences[:6]) + f"<p>{teaser}</p>" + "".join(
        f"<p>{s}</p>" for s in sentences[6:])
    ld = {"@type": "NewsArticle", "articleBody": " ".join(sentences)}
    head = f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    with_ld = extract_article(page(head, body))
    assert teaser not in with_ld.text
    assert all(s in with_ld.text for s in sentences)
    assert teaser in extract_article(page("", body)).text


def test_ld_body_replaces_a_truncated_extraction() -> None:
    ld_sentences = [f"Paragraph {n} of the full story tells what happened in district {n}."
                    for n in range(1, 31)]
    ld = {"@type": "NewsArticle", "articleBody": " ".join(ld_sentences)}
    head = f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    body = "".join(f"<p>{s}</p>" for s in ld_sentences[:8])
    assert ld_sentences[-1] in extract_article(page(head, body)).text


def test_a_first_sentence_ending_with_a_short_headline_stays() -> None:
    head = '<meta property="og:title" content="Brexit">'
    sentence = "Ministers met again to talk about Brexit"
    text = extract_article(page(head, body=f"<p>{sentence}</p>{BODY}")).text
    assert text.startswith(sentence)


def test_headline_and_its_kicker_leave_the_text_but_a_later_heading_stays() -> None:
    body = ("<p>Election night: Budget talks collapse</p>" + BODY
            + "<h2>Budget talks collapse</h2><p>A later section reuses the title as a heading.</p>")
    text = extract_article(page('<meta property="og:title" content="Budget talks collapse">',
                                body=body)).text
    assert text.startswith("The council met")
    assert "Budget talks collapse\n\nA later section" in text


def test_a_list_of_links_leaves_the_text_a_list_with_words_stays() -> None:
    links = ("<ul><li>Transport: <a href='/a'>Mayor opens the new bridge over the river</a></li>"
             "<li><a href='/b'>Schools close early for the summer holidays</a></li>"
             "<li><a href='/c'>Rail strike called off after late-night talks</a></li></ul>")
    points = ("<ul><li>The council cut the <a href='/roads'>road budget</a> by a tenth.</li>"
              "<li>Libraries keep their opening hours until next spring.</li></ul>")
    html = page(body=BODY + points + links + BODY.replace("council", "mayor"))
    assert "Mayor opens" in (trafilatura.extract(html) or "")  # what an extractor keeps
    text = extract_article(html).text
    assert "road budget by a tenth" in text
    assert "Mayor opens" not in text


def test_a_teaser_article_above_the_story_does_not_take_the_story_away() -> None:
    teaser = "<article><h1>Harbour reopens</h1><p>The harbour reopened on Friday.</p></article>"
    html = (f"<html><head><title>Budget talks | Daily Planet</title></head><body>{teaser}"
            f"<article><h1>Budget talks</h1>{BODY}</article></body></html>")
    text = extract_article(html).text
    assert "The council met" in text and "harbour" not in text


def test_a_sidebar_placed_before_the_text_takes_only_itself_away() -> None:
    sidebar = ("<aside><div>Most read</div><ul><li><a href='/a'>Mayor opens the new bridge</a></li>"
               "<li><a href='/b'>Schools close early</a></li></ul></aside>")
    text = extract_article(page(body=f"<div>{sidebar}<div>{BODY}</div></div>")).text
    assert text.startswith("The council met on Tuesday")
    assert "Mayor opens" not in text


def test_the_next_story_appended_below_the_article_leaves_the_page() -> None:
    html = ("<html><body><main><article><h1>Budget talks</h1><p>The council met.</p>"
            "<article><h1>Budget talks</h1><p>Inner copy.</p></article></article>"
            "<div><article><h1>Harbour reopens</h1><p>The harbour reopened.</p></article></div>"
            "<article><h2>Teaser</h2><p>A teaser without a headline of its own.</p></article>"
            "</main></body></html>")
    tree = lxml.html.fromstring(html)
    drop_other_articles(tree, ["Budget talks | Daily Planet"])
    text = tree.text_content()
    assert "The council met." in text and "Inner copy." in text and "A teaser" in text
    assert "harbour" not in text
    # The page's own story is the one its metadata names, wherever it sits.
    tree = lxml.html.fromstring(html)
    drop_other_articles(tree, ["Harbour reopens"])
    assert "harbour reopened" in tree.text_content()
    assert "The council met." not in tree.text_content()
    # Without a story the metadata names, every article stays.
    tree = lxml.html.fromstring(html)
    drop_other_articles(tree, [])
    assert "harbour reopened" in tree.text_content() and "The council met." in tree.text_content()


def test_byline_and_timestamp_lines_leave_the_top_of_the_text() -> None:
    head = '<meta name="author" content="Jane Doe">'
    body = ("<p>By Jane Doe</p><p>Updated 15.59 | Published 14.12.2024</p>" + BODY
            + BODY.replace("council", "mayor")
            + "<p>Jane Doe</p><p>Wann sind die Eisheiligen 2024?</p>"
            + "".join(BODY.replace("council", other) for other in ("board", "city", "town")))
    extraction = extract_article(page(head, body=body))
    assert extraction.authors == ["Jane Doe"]
    assert extraction.text.startswith("The council met")
    # Lower down, the same lines are the text's own.
    assert "Jane Doe\n\nWann sind die Eisheiligen 2024?" in extraction.text


def test_an_embedded_social_media_post_leaves_the_text() -> None:
    tweet = ('<blockquote class="twitter-tweet"><p>Council budget vote tonight, stay tuned for '
             'the results and all the reactions from the floor of the chamber.</p>'
             "&mdash; City Desk (@citydesk) May 1, 2024</blockquote>")
    html = page(body=BODY + tweet + BODY.replace("council", "mayor"))
    assert "stay tuned" in (trafilatura.extract(html) or "")  # what an extractor keeps
    text = extract_article(html).text
    assert "stay tuned" not in text and "The mayor met" in text


STANDFIRST = "Councillors agreed a leaner budget after a long night of talks in the town hall."


@pytest.mark.parametrize(("shown", "footer", "want_first"), [
    (f'<div class="dek">{STANDFIRST}</div>', "", STANDFIRST),
    ("", "", "The council met"),  # a description the page does not show is no part of its text
    ("", f"<footer><p>{STANDFIRST}</p></footer>", "The council met"),  # a site's blurb
])
def test_standfirst_shown_on_the_page_leads_the_text(shown: str, footer: str,
                                                     want_first: str) -> None:
    head = f'<meta name="description" content="{STANDFIRST}">'
    html = (f'<!DOCTYPE html><html lang="en"><head>{head}</head><body><header><h1>Budget talks'
            f"</h1>{shown}</header><main><article>{BODY}</article></main>{footer}</body></html>")
    text = extract_article(html).text
    assert text.startswith(want_first)
    assert text.count(STANDFIRST) == (1 if shown else 0)


def test_a_site_tagline_above_the_headline_is_no_standfirst() -> None:
    head = f'<meta name="description" content="{STANDFIRST}">'
    html = (f'<!DOCTYPE html><html lang="en"><head>{head}</head><body><div class="tagline">'
            f"{STANDFIRST}</div><header><h1>Budget talks</h1></header><main><article>{BODY}"
            "</article></main></body></html>")
    assert extract_article(html).text.startswith("The council met")


def test_standfirst_already_in_the_text_is_not_repeated() -> None:
    head = f'<meta name="description" content="{STANDFIRST}">'
    text = extract_article(page(head, body=f"<p>{STANDFIRST}</p>{BODY}")).text
    assert text.count(STANDFIRST) == 1


def test_a_first_sentence_with_a_date_in_it_is_text_not_a_timestamp() -> None:
    sentence = "2025年1月14日、東京で震度5の地震があった。"
    text = extract_article(page(body=f"<p>{sentence}</p>{BODY}", lang="ja")).text
    assert text.startswith(sentence)


def test_invisible_hyphenation_hints_leave_title_and_text() -> None:
    head = '<meta property="og:title" content="Helikopter&shy;landeplatz geplant">'
    body = "<p>" + " ".join(["Der Helikopter\u00adlandeplatz\u200b kommt."] * 12) + "</p>"
    extraction = extract_article(page(head, body=body, lang="de"))
    assert extraction.title == "Helikopterlandeplatz geplant"
    assert "Helikopterlandeplatz kommt." in extraction.text
    assert "\u00ad" not in extraction.text and "\u200b" not in extraction.text


@pytest.mark.parametrize("line", [
    "Got a story? Get in touch with our news team by emailing us at news@example.com.",
    "CLICK HERE TO GET THE EXAMPLE NEWS APP",
    "For the latest breaking news, sign up for our newsletters.",
    "Do you have a story to tell? Email: jane.doe@example.com",
    "Fehler gefunden? Jetzt melden.",
    "Hat Ihnen dieser Artikel gefallen? Dann unterstützen Sie uns bitte.",
    "Il vous reste 57% de cet article à lire. La suite est réservée aux abonnés.",
    "You must confirm your public display name before commenting",
])
def test_closing_calls_to_action(line: str) -> None:
    assert is_closing_prompt(line)


@pytest.mark.parametrize("line", [
    "The company did not immediately respond to a request for comment.",
    "Subscription revenue rose 10 percent in the quarter, the firm said.",
    "Anyone with information is asked to email tips@police.example or to call the station.",
    "Residents signed up for the scheme in large numbers, the council said on Monday.",
])
def test_closing_lines_of_news_are_text(line: str) -> None:
    assert not is_closing_prompt(line)


def test_only_the_last_paragraphs_are_searched_for_calls_to_action() -> None:
    text = [f"Paragraph {n} of the story." for n in range(8)]
    early = "Click here to read the full ruling, published on Monday."
    paragraphs = [early, *text, "Join our commenting forum", "Follow us for more"]
    assert drop_closing_prompts(paragraphs) == [early, *text]


@pytest.mark.parametrize("ruby", [
    "<ruby><rb>尹錫悦</rb><rp>（</rp><rt>ユンソンニョル</rt><rp>）</rp></ruby>",
    "<ruby>尹錫悦<rt>ユンソンニョル</rt></ruby>",  # no <rp>: the parentheses are ours
])
def test_ruby_readings_stay_in_the_sentence(ruby: str) -> None:
    sentence = "韓国の{}大統領は３日夜、緊急談話を出し、非常戒厳を宣言した。"
    extraction = extract_article(page(body=f"<p>{sentence.format(ruby)}</p>", lang="ja"))
    assert extraction.text.split("\n\n")[0] == sentence.format("尹錫悦（ユンソンニョル）")


def test_chinese_and_japanese_count_each_character_as_a_word() -> None:
    # Two short sentences: 28 characters and "13", which `\w+` reads as 5 words (too few).
    body = "<p>気象庁は13日、日向灘で地震があったと発表した。</p><p>津波の心配はない。</p>"
    extraction = extract_article(page(body=body, lang="ja"))
    assert extraction.text.startswith("気象庁は13日")
    assert extraction.words == 29


STORY = [f"Paragraph {n}: the council met on Tuesday and voted on next year's budget."
         for n in range(4)]


@pytest.mark.parametrize("run", [
    ["Tags:", "- Budget", "- City council", "- Berlin"],
    ["Similar:", "- 19.03.2024 Council delays vote", "- 05.03.2024 Budget gap widens",
     "- 04.03.2024 Mayor under fire"],
    ["Latest news", "Support us", "Want to shop online?", "Thank you!"],
])
def test_short_lines_after_the_last_paragraph_are_not_text(run: list[str]) -> None:
    assert drop_closing_fragments([*STORY, *run]) == STORY


@pytest.mark.parametrize("run", [
    ["- Budget", "- Berlin"],  # two lines: too few to tell from a short closing list
    ["Old sayings about the cold:", "- „Plant nothing before the frost has passed.“",
     "- Never trust a warm May.", "- Cold nights, thin harvest."],  # sentences: the article's
    [],
])
def test_a_short_or_sentence_closing_run_stays(run: list[str]) -> None:
    assert drop_closing_fragments([*STORY, *run]) == [*STORY, *run]


def sectioned_page(second: str, between: str = '<div class="ad">Advertisement</div>') -> str:
    first = "".join(f"<p>First part, paragraph {n}: the council met on Tuesday and argued about "
                    "the budget for the coming year.</p>" for n in range(4))
    return (f"<html><body><main><h1>Budget talks</h1><div class='articleBody'>{first}</div>"
            f"{between}<div class='articleBody'>{second}</div></main></body></html>")


def test_an_article_cut_in_sections_by_ads_is_read_whole() -> None:
    second = "<h2>The mayor answers</h2>" + "".join(
        f"<p>Second part, paragraph {n}: the mayor answered that the city could not pay for new "
        "buses this year.</p>" for n in range(3))
    paragraphs = extract_article(sectioned_page(second)).text.split("\n\n")
    assert len(paragraphs) == 8
    assert paragraphs[4] == "The mayor answers"
    assert paragraphs[-1].startswith("Second part, paragraph 2")


@pytest.mark.parametrize("second", [
    # The same story again, as a teaser or a copy for small screens.
    "<p>First part, paragraph 0: the council met on Tuesday and argued about the budget for the "
    "coming year, as it does.</p>",
    # No prose: a list of short links.
    "<p>Budget</p><p>Tuesday's vote</p>",
])
def test_a_section_like_the_article_that_is_not_its_text_stays_out(second: str) -> None:
    assert len(extract_article(sectioned_page(second)).text.split("\n\n")) == 4


def test_the_page_furniture_below_the_article_leaves_the_text() -> None:
    story = "".join(f"<p>{line}</p>" for line in STORY)
    furniture = "<p>Tags:</p><p>Budget</p><p>City council</p><p>Support us</p>"
    extraction = extract_article(page(body=story + furniture))
    assert extraction.text.split("\n\n")[-1] == STORY[-1]


def test_a_page_of_short_lines_only_is_left_whole() -> None:
    lines = ["Breaking", "Markets fall", "More soon", "Live"]
    assert drop_closing_fragments(lines) == lines


@pytest.mark.parametrize(("notice", "pitch"), [
    ("Il vous reste 57% de cet article à lire. La suite est réservée aux abonnés.",
     ["Déjà abonné ? Se connecter", "Offre spéciale : 1 € le premier mois"]),
    ("この記事は会員限定です。", ["紙の新聞の定期購読者の方は、無料で会員登録できます。",
                                  "- 会員向け記事が読み放題", "関連キーワード"]),
])
def test_a_paywall_notice_ends_the_text(notice: str, pitch: list[str]) -> None:
    story = STORY * 2
    assert cut_at_paywall([*story, notice, *pitch]) == (story, True)


@pytest.mark.parametrize("paragraphs", [
    ["Exklusiv für Abonnenten", *STORY],
    [STORY[0], "For subscribers only", *STORY[1:]],  # a badge above most of the text
    # A sentence that names the phrases, not a notice:
    [*STORY, "Subscription revenue rose, the firm said; it had 2m subscribers only last year, "
             "and to continue reading the figures one must look at the quarterly report, which "
             "the firm published on Monday along with a long list of other documents that few "
             "people ever read, as the analysts who follow the company have long said."],
])
def test_what_only_looks_like_a_paywall_notice_cuts_nothing(paragraphs: list[str]) -> None:
    assert cut_at_paywall(paragraphs) == (paragraphs, False)


def test_the_note_on_the_author_that_closes_an_article_is_not_text() -> None:
    head = '<meta name="author" content="Jane Doe">'
    story = "".join(f"<p>Paragraph {n}: the council met on Tuesday to discuss the budget.</p>"
                    for n in range(6))
    note = "<p>Jane Doe is our correspondent in Berlin and covers city politics.</p>"
    extraction = extract_article(page(head, story + note))
    assert extraction.authors == ["Jane Doe"]
    assert "correspondent in Berlin" not in extraction.text
    assert extraction.text.split("\n\n")[-1].startswith("Paragraph 5")


def test_a_closing_paragraph_naming_the_author_late_or_at_length_is_text() -> None:
    head = '<meta name="author" content="Jane Doe">'
    story = "".join(f"<p>Paragraph {n}: the council met on Tuesday to discuss the budget.</p>"
                    for n in range(6))
    late = "<p>The mayor told reporters, among them Jane Doe, that the vote would wait.</p>"
    assert "among them Jane Doe" in extract_article(page(head, story + late)).text


# --- authors and credits (issue 20) ------------------------------------------------------------


@pytest.mark.parametrize(("raw", "want"), [
    # A date or weekday run into the name.
    (["Nathan Willis March 3, 2024"], ["Nathan Willis"]),
    (["Joe Wee Monday"], ["Joe Wee"]),
    (["Jane Doe 14. März 2024"], ["Jane Doe"]),
    (["Theresa May"], ["Theresa May"]),  # a month as a surname, right after the given name
    # A form label or a heading is no name.
    (["Name"], []),
    (["Username"], []),
    (["Auteurs"], []),
    (["Jobs; Hire"], []),
    # Leftover labels, in other cases and scripts.
    (["Alles von Jane Doe"], ["Jane Doe"]),
    (["VON JANE DOE"], ["Jane Doe"]),
    (["Par Jeanne Dupont"], ["Jeanne Dupont"]),
    (["Автор: Иван Петров"], ["Иван Петров"]),
    (["Auteur : Jeanne Dupont"], ["Jeanne Dupont"]),
    (["More from Jane Doe"], ["Jane Doe"]),
    # Library-catalogue order with a particle is one person.
    (["Jong, Michiel de"], ["Michiel de Jong"]),
    (["Beek, Anna van der"], ["Anna van der Beek"]),
    # An ampersand inside a name, or between two people.
    (["Mac & i"], []),
    (["Jane Doe & John Roe"], ["Jane Doe", "John Roe"]),
    # Agencies by their full names are no people.
    (["Associated Press", "Anadolu Ajansı"], []),
])
def test_author_families(raw: list[str], want: list[str]) -> None:
    assert clean_authors(raw) == want


@pytest.mark.parametrize(("raw", "want"), [
    (["Felix Schröder und Jörg Soldwisch, dpa"], ["dpa"]),
    (["Von AFP und Reuters"], ["AFP", "Reuters"]),
    (["Deutsche Presse-Agentur", "MM-Redaktion"], ["Deutsche Presse-Agentur", "MM-Redaktion"]),
    (["MND Staff"], ["MND Staff"]),
    (["Redaktion hessenschau.de"], ["Redaktion hessenschau.de"]),
    (["Daily Planet"], ["Daily Planet"]),  # the site itself
    (["Jane Doe", "Folgen", "Red", "Nachrichten"], []),  # a button, a label: no credit
    (["読売新聞オンライン", "한국일보", "松岡大地"], ["読売新聞オンライン", "한국일보"]),
])
def test_credits(raw: list[str], want: list[str]) -> None:
    assert clean_credits(raw, {"dailyplanet"}) == want


def ld_author_page(authors: object, extra_head: str = "", body: str = BODY) -> str:
    ld = {"@type": "NewsArticle", "headline": "Budget talks", "author": authors}
    return page(f'<script type="application/ld+json">{json.dumps(ld)}</script>{extra_head}', body)


@pytest.mark.parametrize(("authors", "people", "credits"), [
    ([{"@type": "Person", "name": "Jane Doe"}, {"@type": "Organization", "name": "SDA"}],
     ["Jane Doe"], ["SDA"]),
    ({"@type": "Person", "name": "Jane Doe und John Roe, dpa"}, ["Jane Doe", "John Roe"], ["dpa"]),
    ({"@type": "Person", "name": "Associated Press"}, [], ["Associated Press"]),
    ({"@type": "NewsMediaOrganization", "name": "Daily Planet"}, [], ["Daily Planet"]),
    # A list nested in the list, and a name the publisher wrote in lower case.
    ([{"@type": "Person", "name": "jane doe"}, [{"@type": "Person", "name": "Reuters"}]],
     ["Jane Doe"], ["Reuters"]),
    # The site (with its region) is credited when no person is named, not beside a person.
    ({"@type": "Person", "name": "MDR THÜRINGEN"}, [], ["MDR THÜRINGEN"]),
    ([{"@type": "Person", "name": "Jane Doe"}, {"@type": "Person", "name": "MDR THÜRINGEN"}],
     ["Jane Doe"], []),
    ({"@type": "Person", "name": "Guardian staff reporter"}, [], ["Guardian staff reporter"]),
])
def test_json_ld_authors_and_credits(authors: object, people: list[str],
                                     credits: list[str]) -> None:
    site = '<meta property="og:site_name" content="Daily Planet">'
    html = ld_author_page(authors, site + '<link rel="canonical" href="https://www.mdr.de/x">')
    extraction = extract_article(html)
    assert (extraction.authors, extraction.credits) == (people, credits)


def test_a_wire_story_names_no_teasers_author() -> None:
    # The agency credit ends the search: the name further down is a teaser's.
    teaser = '<aside><p>Von <a href="/autor/max-muster">Max Muster</a></p></aside>'
    extraction = extract_article(ld_author_page({"@type": "Person", "name": "dpa"},
                                                body=BODY + teaser))
    assert (extraction.authors, extraction.credits) == ([], ["dpa"])


def test_a_page_that_names_no_author_returns_none() -> None:
    # Only a first name found by looking (a profile link in a sidebar): too weak to be a byline.
    body = BODY + '<div class="sidebar"><a href="/author/eddie/">Eddie</a></div>'
    extraction = extract_article(page(body=body))
    assert (extraction.authors, extraction.credits) == ([], [])
    body = BODY + '<div class="meta"><a href="/author/jane-doe/">Jane Doe</a></div>'
    assert extract_article(page(body=body)).authors == ["Jane Doe"]


def test_credits_travel_in_the_parsed_message() -> None:
    extraction = extract_article(ld_author_page({"@type": "Organization", "name": "Reuters"}))
    parsed = ArticleParsed(id="a1", **dataclasses.asdict(extraction))
    again = ArticleParsed.model_validate_json(parsed.model_dump_json())
    assert again.credits == ["Reuters"]
    # A message from before the field existed is read with no credits.
    old = json.loads(parsed.model_dump_json())
    del old["credits"]
    assert ArticleParsed.model_validate(old).credits == []


# --- the text of one article only (issue 20) ---------------------------------------------------

STORY_EN = [f"Paragraph {n} of the story: the council met on Tuesday and argued for hours over "
            f"next year's budget, the new tram line and the school repairs." for n in range(5)]
OTHER_EN = [f"Other story {n}: the football club announced a new coach on Monday after a long "
            f"search that kept supporters waiting all summer." for n in range(4)]


def test_a_related_story_laid_out_after_the_article_is_not_kept() -> None:
    # No <article> around either, no second <h1>: only a heading and a date line.
    other = ("<h2>Club names its new coach</h2><p>12.03.2024</p>"
             + "".join(f"<p>{p}</p>" for p in OTHER_EN))
    html = ("<html><head><title>Budget talks</title></head><body><div class='content'>"
            "<h1>Budget talks</h1>" + "".join(f"<p>{p}</p>" for p in STORY_EN) + other
            + "</div></body></html>")
    text = extract_article(html).text
    assert STORY_EN[-1] in text
    assert "Other story" not in text and "new coach" not in text


def test_a_live_blogs_timed_entries_are_kept() -> None:
    entries = "".join(f"<h2>Update {n}</h2><p>{10 + n}:30</p><p>{STORY_EN[n]}</p>"
                      for n in range(4))
    html = ("<html><body><div class='content'><h1>Budget talks</h1>"
            f"<p>{STORY_EN[4]}</p>{entries}</div></body></html>")
    text = extract_article(html).text
    assert all(p in text for p in STORY_EN)


@pytest.mark.parametrize("teaser", [
    "<h3>Related articles</h3><ul><li><a href='/a'>Tram line opens</a></li>"
    "<li><a href='/b'>School repairs start</a></li></ul>",
    "<h3>相關文章</h3><ul><li><a href='/a'>輕軌開通</a></li>"
    "<li><a href='/b'>學校維修</a></li></ul>",
])
def test_a_teaser_heading_inside_the_article_removes_only_its_block(teaser: str) -> None:
    html = ("<html><body><article><h1>Budget talks</h1>"
            + "".join(f"<p>{p}</p>" for p in STORY_EN[:2]) + teaser
            + "".join(f"<p>{p}</p>" for p in STORY_EN[2:]) + "</article></body></html>")
    text = extract_article(html).text
    assert all(p in text for p in STORY_EN)
    assert "Tram line opens" not in text and "輕軌" not in text


def test_a_chinese_article_opening_with_a_teaser_heading_is_kept() -> None:
    sentence = "市議會週二開會討論明年的預算，輕軌新線和學校維修也在議程上。"
    story = "".join(f"<p>{sentence * 3}{n}</p>" for n in range(4))
    html = ("<html><body><h1>預算會議</h1><div class='main'><div><h3>相關文章</h3>"
            "<a href='/a'>輕軌開通</a></div>" + story + "</div></body></html>")
    extraction = extract_article(html)
    assert extraction.text.count("市議會週二開會") == 12


def test_ruby_readings_do_not_split_a_word() -> None:
    # "子ども" with a reading over 子: searchable as one word, the reading left out. Before a
    # kanji the word has ended, and the reading stays.
    body = ("<p><ruby>子<rt>こ</rt></ruby>どもたちは<ruby>公園<rt>こうえん</rt></ruby>で"
            "遊んでいた。<ruby>市<rp>(</rp><rt>し</rt><rp>)</rp></ruby>は新しい<ruby>遊具<rt>ゆうぐ"
            "</rt></ruby>設置を発表した。</p>")
    text = extract_article(page(body=body, lang="ja")).text
    assert text.startswith("子どもたちは公園で遊んでいた。市は新しい遊具（ゆうぐ）設置を発表した。")


def test_a_post_that_is_a_list_of_links_keeps_its_list() -> None:
    items = "".join(
        f"<li><a href='https://example.org/{n}'>Report {n} on the city budget and the tram line"
        f"</a></li>" for n in range(8))
    html = ("<html><body><article><h1>Reading list: the budget</h1>"
            "<p>What to read before the council votes.</p>"
            f"<ul>{items}</ul></article>"
            "<footer><ul><li><a href='/'>Home</a></li><li><a href='/about'>About</a></li></ul>"
            "</footer></body></html>")
    text = extract_article(html).text
    assert "Report 7 on the city budget" in text
    assert "About" not in text


def test_an_encyclopedia_pages_ld_headline_describing_it_is_not_the_title() -> None:
    ld = {"@type": "Article", "headline": "Capital city of a European country",
          "name": "Berlin"}
    head = (f'<script type="application/ld+json">{json.dumps(ld)}</script>'
            '<title>Berlin - Example Encyclopedia</title>'
            '<meta property="og:title" content="Berlin">')
    html = (f"<html><head>{head}</head><body><article><h1>Berlin</h1>{BODY}</article>"
            "</body></html>")
    assert extract_article(html).title == "Berlin"
