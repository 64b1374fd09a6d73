"""Pages rendered in the browser: the article read from the HTML string their scripts carry."""

import json

import lxml.html
import pytest

from services.parser.embedded import embedded_article_html
from services.parser.extract import extract_article
from shared.errors import PermanentError

PARAGRAPHS = [
    "Der Stadtrat hat am Dienstag über den neuen Haushalt für das kommende Jahr beraten.",
    "Die Opposition kritisierte die geplanten Kürzungen bei Schulen und Büchereien scharf.",
    "Eine Entscheidung über die Vorlage soll nach der Sommerpause im September fallen.",
]
ARTICLE = "".join(f"<p>{p}</p>" for p in PARAGRAPHS)
BIO = "<p>Jane Doe writes about cities.</p><p>She lives in Berlin.</p>"
HEAD = ('<title>Haushalt vertagt | Example News</title>'
        '<meta property="og:title" content="Haushalt vertagt">')


def shell(scripts: str) -> str:
    """A page whose markup is an empty mount point, as client-rendered sites serve it."""
    return (f'<!DOCTYPE html><html lang="de"><head>{HEAD}</head>'
            f'<body><div id="root"></div>{scripts}</body></html>')


def next_flight(*texts: str) -> str:
    """Next.js app-router streaming calls carrying `texts` as text rows (length in UTF-8 bytes)."""
    rows = "".join(f"{i + 10:x}:T{len(t.encode()):x},{t}" for i, t in enumerate(texts))
    payload = '0:["$","div",null,{}]\n' + rows + '\n1f:["$","p",null,{}]\n'
    # Split across two calls, as the stream arrives in chunks.
    cut = len(payload) // 2
    return "".join(f"<script>self.__next_f.push([1,{json.dumps(part)}])</script>"
                   for part in (payload[:cut], payload[cut:]))


def test_next_js_article_read_from_its_flight_data() -> None:
    extraction = extract_article(shell(next_flight(BIO, ARTICLE)), "https://example.com/a/1")
    assert extraction.text.split("\n\n") == PARAGRAPHS
    assert extraction.title == "Haushalt vertagt"


def test_article_read_from_a_json_script() -> None:
    data = {"props": {"pageProps": {"story": {"teaser": "<p>Kurz</p>", "body": ARTICLE}}}}
    script = f'<script id="__NEXT_DATA__" type="application/json">{json.dumps(data)}</script>'
    assert extract_article(shell(script)).text.split("\n\n") == PARAGRAPHS


def test_the_longest_fragment_is_the_article() -> None:
    tree = lxml.html.fromstring(shell(next_flight(ARTICLE, BIO)))
    assert embedded_article_html(tree) == ARTICLE


def test_publisher_body_when_the_markup_shows_no_text() -> None:
    body = " ".join(PARAGRAPHS * 3)
    ld = {"@type": "NewsArticle", "headline": "Haushalt vertagt", "articleBody": body}
    page = shell(f'<script type="application/ld+json">{json.dumps(ld)}</script>')
    assert extract_article(page).text == body


@pytest.mark.parametrize("scripts", [
    "",
    '<script type="application/json">{"body": "<p>broken</p>", </script>',
    "<script>self.__next_f.push([1,\"0:T999,<p>cut short</p>\"])</script>",
])
def test_no_article_anywhere_is_a_clear_error(scripts: str) -> None:
    with pytest.raises(PermanentError, match="no article text"):
        extract_article(shell(scripts))
