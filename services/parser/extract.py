"""Turn one news page's HTML into clean article text and metadata (pure, synchronous, CPU-bound)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from htmldate import find_date
from lxml.html import HtmlElement, fromstring
from trafilatura import bare_extraction
from trafilatura.metadata import extract_author as _trafilatura_author
from trafilatura.settings import Document
from trafilatura.utils import DOCTYPE_TAG, HTML_PARSER, load_html

from shared.errors import PermanentError

from .boilerplate import (
    clean_paragraphs,
    count_words,
    cut_at_paywall,
    drop_boilerplate_blocks,
    drop_closing_fragments,
    drop_closing_prompts,
    drop_link_lists,
    drop_other_articles,
    drop_social_embeds,
)
from .bylines import (
    BYLINE_PREFIX,
    MAX_CREDIT_CHARS,
    WIRE_AGENCIES,
    clean_authors,
    clean_credits,
    credits_agencies_only,
    names_site,
)
from .embedded import embedded_article_html
from .text import INVISIBLE_CHARS as _INVISIBLE_CHARS
from .text import clean as _clean
from .text import fold as _fold
from .text import unique as _unique


@dataclass(frozen=True)
class Extraction:
    """What the parser knows about one article; field names match `shared.messages.ArticleContent`.

    `text` holds the main text as paragraphs separated by one blank line ("\\n\\n").
    """

    title: str
    text: str
    authors: list[str]
    published: datetime | None
    modified: datetime | None
    language: str | None
    description: str | None
    site_name: str | None
    canonical_url: str | None
    image: str | None
    tags: list[str]
    words: int
    paywalled: bool
    credits: list[str] = dataclasses.field(default_factory=list)


# schema.org types whose node describes the article itself (not the page, site or a breadcrumb).
_ARTICLE_TYPES = frozenset({
    "article", "newsarticle", "reportagenewsarticle", "analysisnewsarticle",
    "opinionnewsarticle", "reviewnewsarticle", "backgroundnewsarticle", "askpublicnewsarticle",
    "blogposting", "liveblogposting", "socialmediaposting", "report", "techarticle",
    "scholarlyarticle", "satiricalarticle", "advertisertcontentarticle", "medicalscholarlyarticle",
})
# Less specific nodes, used only when the page has no article node.
_PAGE_TYPES = frozenset({"webpage", "itempage", "creativework", "videoobject", "collectionpage"})

# trafilatura's settings, measured with bench/extraction.py: the defaults (balanced, with fallbacks)
# gave body F1 0.946; favor_precision 0.941, favor_recall 0.943, fast (no fallbacks) 0.936. Measured
# again with the boilerplate and lead rules in place: defaults 0.962, favor_recall 0.959,
# favor_precision 0.956, fast 0.952.
_TRAFILATURA_OPTIONS: dict[str, Any] = {
    "with_metadata": False, "include_comments": False, "include_tables": True,
}
# Below this, what is left is a menu or a caption, not an article (the shortest dev-set body has
# 21 words).
_MIN_WORDS = 10
# A JSON-LD `articleBody` shorter than this (in word 4-grams) is a teaser, not the article.
_MIN_LD_BODY_GRAMS = 50
# A skipped section of the article holds a paragraph of at least this many words, and shares
# less than this with the text we have.
_MIN_SECTION_PROSE_WORDS = 15
_MAX_SECTION_OVERLAP = 0.3
_SECTION_BLOCKS = ("p", "h2", "h3", "h4")
# The headline, byline and timestamp sit among the text's first lines (above or below a lead).
_LEAD_ZONE = 4
_MAX_KICKER_CHARS = 40
_MIN_KICKED_HEADLINE_CHARS = 15
_MAX_LEAD_LINE_WORDS = 25
# A description shorter than this (in word 4-grams) is a tagline, not a standfirst.
_MIN_STANDFIRST_GRAMS = 5
# A standfirst is in the first part of the page's text (the footer comes last) and follows the
# headline closely (on the dev set within 1,400 characters, a byline, date and caption between).
_STANDFIRST_DISTANCE = 2000
_STANDFIRST_ZONE = 0.5
_INVISIBLE = frozenset({"script", "style", "noscript", "template"})
# Control characters XML forbids (all but tab, line feed and carriage return).
_FORBIDDEN_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
# A byline or timestamp line is short; a timestamp has at most a few words beside its numbers
# ("Stand: 22.04.2024, 06:00 Uhr", "17:41 JST, October 13, 2024").
_MAX_BYLINE_WORDS = 8
_MAX_TIMESTAMP_LABELS = 4
_MAX_TIMESTAMP_CHARS = 80
_DATE_OR_TIME = re.compile(r"(?<!\d)(?:(?:19|20)\d\d|\d{1,2}[:.]\d\d)(?!\d)")
_TITLE_SEPARATORS = re.compile(r"\s+[|–—\-:·•»/ㅣ]{1,2}\s+|\s*[|｜：ㅣ]\s*")
_DATE_ONLY = re.compile(r"^\s*[\d./\-\s]{6,}\s*$")
_WORD = re.compile(r"\w+")
_HIRAGANA = re.compile("[\u3041-\u309f]")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
# The article before another story begins is of some length; that story opens with a heading.
_MIN_STORY_WORDS = 50
_MAX_HEADING_WORDS = 15

# Path segments of contributors' profile pages ("/autoren/name/max-kolter"): a link there names one.
_PROFILE_SEGMENTS = frozenset({
    "author", "authors", "autor", "autoren", "autorin", "auteur", "auteurs", "autore", "autori",
    "autores", "journalist", "journalists", "journalisten", "redakteur", "redakteure", "reporter",
    "reporters", "writer", "writers", "columnist", "columnists", "yazar", "yazarlar", "penulis",
})
# Elements a shown credit sits in, and its length.
_BYLINE_TAGS = frozenset({"p", "li", "span", "div", "dd", "address", "strong", "b", "em"})
_MAX_SHOWN_BYLINE_WORDS = 10
# The first word of `BYLINE_PREFIX`'s labels: a cheap test before an element's text is built.
_LABEL_START = re.compile(
    r"(?:written|reported|posted|von|by|par|por|di|door|av|af|przez|from|från|autor(?:in|es|en|a)?|"
    r"authors?|auteurs?|autore|autori|forfatter|texte?|alles?|mehr|more|all|articles|stories|"
    r"posts|tous|автор|авторы|від|от|του|της|بقلم|作者|文|撰文)(?:\b|(?=[:：]))",
    re.IGNORECASE)
_MAX_SIGNATURE_WORDS = 12
# The note on the author: among the last paragraphs, short, the name in its first characters.
_AUTHOR_NOTE_ZONE = 3
_MAX_AUTHOR_NOTE_WORDS = 80
_AUTHOR_NOTE_OPENING = 30


def extract_article(html: str, url: str | None = None) -> Extraction:
    """Main text and metadata of the article in `html` (served at `url`, if known).

    Raises PermanentError when the page holds no article text.
    """
    if not html or not html.strip():
        raise PermanentError("empty page: no HTML to extract from")
    tree = parse_html(html)
    if tree is None:
        raise PermanentError("not an HTML document")
    meta = _PageMeta.read(tree, url)
    _inline_ruby(tree)
    drop_boilerplate_blocks(tree)
    drop_link_lists(tree)
    drop_other_articles(tree, meta.headlines(h1=False))
    drop_social_embeds(tree)
    paragraphs = _with_skipped_sections(_main_text(tree, url), tree)
    paragraphs = _agree_with_ld_body(paragraphs, meta.ld_body())
    if _too_short(paragraphs) and (shipped := embedded_article_html(tree)):
        # A page rendered in the browser: its article is an HTML string in a script.
        shell = f"<html><body><article>{shipped}</article></body></html>"
        paragraphs = _main_text(parse_html(shell), url)
    paragraphs, truncated = cut_at_paywall(paragraphs)
    paragraphs = drop_closing_prompts(paragraphs)
    paragraphs, signed = _without_signature(paragraphs, tree)
    paragraphs = drop_closing_fragments(paragraphs)
    # The article's own signature line beats the metadata, which may name the CMS account.
    people, credits = meta.bylines(tree)
    authors = signed or people
    paragraphs = _without_lead_metadata(paragraphs, meta.headlines(), authors)
    paragraphs = _without_next_story(paragraphs)
    paragraphs = _without_author_note(paragraphs, authors)
    paragraphs = _with_standfirst(paragraphs, meta.descriptions(), tree, meta.h1[:1])
    text = "\n\n".join(paragraphs)
    words = count_words(text)
    if words < _MIN_WORDS:
        raise PermanentError(f"no article text on the page ({words} words of main text)")
    title = meta.title()
    return Extraction(
        title=title,
        text=text,
        authors=authors,
        credits=credits,
        published=meta.published(tree, url),
        modified=meta.modified(),
        language=meta.language(),
        description=meta.first("description"),
        site_name=meta.site_name(),
        canonical_url=meta.canonical_url(),
        image=meta.image(),
        tags=meta.tags(),
        words=words,
        paywalled=truncated or meta.paywalled(),
    )


def parse_html(html: str) -> HtmlElement | None:
    """The page's tree, as trafilatura's `load_html` builds it.

    `load_html` first deletes the characters XML forbids with a regex over the whole page: a
    millisecond of the 25 a page takes, for pages that rarely hold any. They are looked for at C
    speed here, and `load_html` does its repairs only for a page that needs one. (One difference:
    a lone surrogate, left by bad decoding, ends `load_html`'s text there; here it is "\ufffd".)
    """
    data = html.encode("utf-8", "surrogatepass")
    head = html[:4096]
    if (len(data.translate(None, _FORBIDDEN_BYTES)) != len(data)
            or b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data  # U+FFFE, U+FFFF
            or "html" not in head[:50].lower()
            or DOCTYPE_TAG.match(head.partition("\n")[0])
            or any("<html" in line and line.endswith("/>") for line in head.splitlines()[:4])):
        return load_html(html)
    try:
        tree = fromstring(data, parser=HTML_PARSER)
    except Exception:  # whatever lxml rejects here, load_html knows what to try next
        return load_html(html)
    return tree if tree is not None and len(tree) else load_html(html)


def _main_text(tree: HtmlElement | None, url: str | None) -> list[str]:
    """The main text's paragraphs as trafilatura finds them in `tree`, cleaned."""
    if tree is None:
        return []
    # trafilatura copies the tree it is given, so metadata read from it before stays valid.
    document = bare_extraction(tree, url=url, **_TRAFILATURA_OPTIONS)
    body = (document.text or "") if isinstance(document, Document) else ""
    body = _INVISIBLE_CHARS.sub("", body)
    return clean_paragraphs(body.split("\n") if body else [])


def _inline_ruby(tree: HtmlElement) -> None:
    """Ruby annotations as running text: "尹錫悦（ユンソンニョル）大統領".

    Extractors take <rt> for a block of its own and break the sentence around each annotated
    word. The page's own <rp> parentheses (or ours, when it has none) keep the reading apart.
    When the word goes on in kana after the annotated characters ("<ruby>子<rt>こ</rt></ruby>
    ども"), a reading there would split it ("子（こ）ども" is not found by a search for 子ども):
    it is left out.
    """
    for ruby in list(tree.iter("ruby")):
        if _HIRAGANA.match(ruby.tail or ""):
            for part in list(ruby.iter("rt", "rp")):
                part.drop_tree()  # keeps the part's tail: the next base characters
        parenthesised = ruby.find(".//rp") is not None
        for part in list(ruby.iter("rb", "rt", "rp")):
            if part.tag == "rt" and not parenthesised:
                part.text = f"（{part.text or ''}）"
            part.drop_tag()
        ruby.drop_tag()


def _with_skipped_sections(paragraphs: list[str], tree: HtmlElement) -> list[str]:
    """Our paragraphs and, in page order, the sections of the article the extractor skipped.

    Pages cut an article into several containers of one kind, with ads or teasers between them,
    and extractors take one. Other containers of the tag and class that hold most of our
    paragraphs are the article's too, unless they hold no prose or repeat what we have (the same
    story as a teaser). Dev set: body recall 0.9800 → 0.9828, precision up too; four pages won
    up to 37 points of recall, none lost.
    """
    known = {" ".join(p.split()) for p in paragraphs}
    openings = {_opening(k) for k in known}
    parents: Counter[tuple[str, str]] = Counter()
    texts_of: dict[HtmlElement, str] = {}
    for p in tree.iter("p"):
        # The opening words first: building every <p>'s text would cost a millisecond a page.
        if _opening(p.text or "") not in openings:
            continue
        texts_of[p] = _flat_text(p)
        if texts_of[p] in known and (parent := p.getparent()) is not None:
            parents[(parent.tag, parent.get("class", "").strip())] += 1
    if sum(parents.values()) < 2:
        return paragraphs
    (tag, cls), count = parents.most_common(1)[0]
    if not cls or 2 * count < sum(parents.values()) or tag in _INVISIBLE:
        return paragraphs
    sections = [[texts_of.get(child) or _flat_text(child)
                 for child in block.iterchildren(*_SECTION_BLOCKS)]
                for block in tree.iter(tag) if block.get("class", "").strip() == cls]
    out = list(paragraphs)
    for index, section in enumerate(sections):
        if any(text in known for text in section):
            continue
        texts = [text for text in clean_paragraphs(section) if text not in known]
        if not texts or max(map(count_words, texts)) < _MIN_SECTION_PROSE_WORDS:
            continue
        have = _grams(" ".join(out))
        if any(_share(_grams(text), have) >= _MAX_SECTION_OVERLAP for text in texts):
            continue  # the same story again (a teaser, a second copy for small screens)
        # Before the first of our paragraphs in a later section, or else at the end.
        following = next((text for later in sections[index + 1:] for text in later
                          if text in known), None)
        at = out.index(following) if following is not None and following in out else len(out)
        out[at:at] = texts
        known.update(texts)
    return out


def _opening(text: str) -> str:
    return " ".join(text[:80].split()[:3])


def _flat_text(element: HtmlElement) -> str:
    return " ".join(_INVISIBLE_CHARS.sub("", element.text_content()).split())


def _too_short(paragraphs: list[str]) -> bool:
    return sum(map(count_words, paragraphs)) < _MIN_WORDS


def _agree_with_ld_body(paragraphs: list[str], ld_body: str) -> list[str]:
    """Our paragraphs checked against the publisher's own JSON-LD `articleBody`, when it has one.

    The JSON-LD body has no layout and sometimes gets cut or padded, so it is a second opinion,
    not a replacement (measured on the dev set: replacing lost, this won ~0.003 body F1). When it
    holds nearly all our text and much more, our extraction was cut short: take it. When our text
    holds nearly all of it, drop our longer paragraphs it does not contain (teasers, captions).
    """
    ld_grams = _grams(ld_body)
    ld_total = sum(ld_grams.values())
    if ld_total < _MIN_LD_BODY_GRAMS:  # most pages: no JSON-LD body, nothing more to count
        return paragraphs
    ours = _grams(" ".join(paragraphs))
    our_total = sum(ours.values())
    if not our_total:
        return [ld_body]  # no text in the markup (rendered in the browser): theirs is all
    common = sum((ours & ld_grams).values())
    if common / our_total >= 0.95 and ld_total >= 1.3 * our_total:
        return [ld_body]
    if common / ld_total < 0.9 or common / our_total < 0.7:
        return paragraphs
    kept = []
    for paragraph in paragraphs:
        own = _grams(paragraph)
        total = sum(own.values())
        # Short lines (subheadings) carry too few word 4-grams to judge: kept.
        if total <= 2 or _share(own, ld_grams) >= 0.5:
            kept.append(paragraph)
    return kept


def _without_lead_metadata(paragraphs: list[str], headlines: list[str],
                           authors: list[str]) -> list[str]:
    """The paragraphs without the headline, byline and timestamp that extractors keep on top.

    These are fields of their own (title, authors, published), not text. A kicker glued before the
    headline ("Election night" + headline, as the page's text runs together) goes with it.
    """
    keys = {_fold(h) for h in headlines} - {""}
    people = {_fold(a) for a in authors}
    kept = []
    begun = False  # past the first long paragraph: a heading from here on is the text's own
    for index, paragraph in enumerate(paragraphs):
        if index < _LEAD_ZONE and (
                (not begun and _is_headline(paragraph, keys))
                or _is_byline(paragraph, people) or _is_timestamp(paragraph)):
            continue
        kept.append(paragraph)
        begun = begun or count_words(paragraph) > _MAX_LEAD_LINE_WORDS
    return kept


def _without_next_story(paragraphs: list[str]) -> list[str]:
    """The paragraphs up to where another story begins: a heading with a dated line.

    Some layouts run a related story on as plain paragraphs after the article (no <article>,
    no second <h1>): only a heading and its date line ("Club names its new coach" /
    "12.03.2024") mark where it starts. The article's own heading and date were removed above
    (`_without_lead_metadata`); a live blog's entries carry times, not dates, and stay.
    """
    words = 0
    for index, paragraph in enumerate(paragraphs[:-2]):
        if index >= 2 and words >= _MIN_STORY_WORDS and _is_story_heading(paragraph) and (
                _is_dated(paragraphs[index + 1])):
            return paragraphs[:index]
        words += count_words(paragraph)
    return paragraphs


def _is_story_heading(line: str) -> bool:
    return count_words(line) <= _MAX_HEADING_WORDS and line[-1] not in ".:;,"


def _is_dated(line: str) -> bool:
    # A table's row ("| 2002 | Vladimír Špidla | 30 |") is no date line.
    return not line.startswith("|") and _is_timestamp(line) and _YEAR.search(line) is not None


def _without_signature(paragraphs: list[str], tree: HtmlElement) -> tuple[list[str], list[str]]:
    """The paragraphs without the authors' signature line, and the names it gives.

    Some sites sign an article with its authors' names alone in bold, above the text or below it
    ("<p><strong>Jane Doe/John Roe</strong></p>"); extractors keep it as a paragraph.
    """
    ends = {*range(min(_LEAD_ZONE, len(paragraphs))), len(paragraphs) - 1} - {-1}
    bold: set[str] | None = None  # read from the tree only when a line could be a signature
    for index in sorted(ends):
        line = paragraphs[index]
        if count_words(line) > _MAX_SIGNATURE_WORDS:
            continue
        names = clean_authors([line])
        # Names only: every word of the line is in a name, full names, no heading's colon or
        # full stop ("Sources:", "Key Points:" are not signatures).
        if not names or any(" " not in n for n in names) or line[-1] in ":.!?" or (
                sum(len(n.split()) for n in names) != len(_WORD.findall(line))):
            continue
        bold = _bold_only_paragraphs(tree) if bold is None else bold
        if line in bold:
            return paragraphs[:index] + paragraphs[index + 1:], names
    return paragraphs, []


def _bold_only_paragraphs(tree: HtmlElement) -> set[str]:
    """The texts of paragraphs that are one bold run and nothing else."""
    lines = set()
    for paragraph in tree.iter("p"):
        children = list(paragraph)
        if len(children) == 1 and children[0].tag in ("strong", "b"):
            text = _clean(paragraph.text_content())
            if text and _clean(children[0].text_content()) == text:
                lines.add(text)
    return lines


def _without_author_note(paragraphs: list[str], authors: list[str]) -> list[str]:
    """The paragraphs without the note on the author that closes some articles.

    "Jane Doe is a correspondent in Moscow." / "Korrespondent Jane Doe ist…": a short paragraph
    among the last few that opens with an author's full name is about the author, not the story.
    """
    names = [a for a in authors if " " in a]
    if not names or len(paragraphs) <= _AUTHOR_NOTE_ZONE:
        return paragraphs
    start = len(paragraphs) - _AUTHOR_NOTE_ZONE
    return paragraphs[:start] + [
        p for p in paragraphs[start:]
        if count_words(p) > _MAX_AUTHOR_NOTE_WORDS
        or not any(0 <= p.find(n) < _AUTHOR_NOTE_OPENING for n in names)]


def _with_standfirst(paragraphs: list[str], descriptions: list[str], tree: HtmlElement,
                     h1: list[str]) -> list[str]:
    """The paragraphs led by the standfirst, when the extractor left it out.

    Extractors skip the standfirst, as it sits in the header with the headline. The page's own
    description is its text; shown high on the page, just below the headline (`h1`, when the page
    has one), it is the standfirst (measured on the dev set: the reference texts open with it). A
    site's tagline above the headline or its blurb in the footer is not.
    """
    ours = _grams(" ".join(paragraphs))
    page = None  # the page's text, read only when a description is missing from ours
    for description in descriptions:
        own = _grams(description)
        total = sum(own.values())
        if total < _MIN_STANDFIRST_GRAMS:
            continue
        if _share(own, ours) >= 0.5:
            return paragraphs  # already there
        page = _visible_text(tree) if page is None else page
        shown = page.find(description)
        headline = page.find(h1[0]) if h1 else -1
        high = 0 <= shown < _STANDFIRST_ZONE * len(page)
        if high and (headline < 0 or 0 < shown - headline <= _STANDFIRST_DISTANCE):
            return [description, *paragraphs]
    return paragraphs


def _visible_text(tree: HtmlElement) -> str:
    """The text of the page's body as shown: no scripts or styles, spaces collapsed."""
    body = tree.find(".//body")
    if body is None:
        return ""
    parts = []
    for element in body.iter():
        if element.tag not in _INVISIBLE and isinstance(element.tag, str) and element.text:
            parts.append(element.text)
        if element.tail:
            parts.append(element.tail)
    return " ".join(_INVISIBLE_CHARS.sub("", " ".join(parts)).split())


def _is_byline(line: str, people: set[str]) -> bool:
    """Whether `line` is a byline: "By Jane Doe", "Von Jane Doe, Berlin", the authors' names."""
    if count_words(line) > _MAX_BYLINE_WORDS:
        return False
    names = {_fold(n) for n in clean_authors([line])}
    if names & people:
        return True
    rest = BYLINE_PREFIX.sub("", line.lstrip("-–—• "))
    return rest != line.lstrip("-–—• ") and bool(rest) and all(w[0].isupper() for w in rest.split())


def _is_timestamp(line: str) -> bool:
    """Whether `line` is a date or time ("05.08.2024, 20:59 Uhr", "Updated 15.59 | 14.12.2024")."""
    words: list[str] = _WORD.findall(line)
    if len(line) > _MAX_TIMESTAMP_CHARS or not _DATE_OR_TIME.search(line):
        return False
    # Mostly numbers, at least two of them (day and year, hour and minute): "Wann sind die
    # Eisheiligen 2024?" is a heading. A number may carry its units ("2025年1月14日", "20:59h"); a
    # clause with a number in it ("東京で震度5の地震") is words.
    numbers = sum(2 * sum(c.isdigit() for c in w) >= len(w) for w in words)
    labels = len(words) - numbers
    return numbers >= 2 and labels <= min(numbers, _MAX_TIMESTAMP_LABELS)


def _is_headline(paragraph: str, headlines: set[str]) -> bool:
    """Whether `paragraph` is one of the (folded) headlines, perhaps after a kicker."""
    key = _fold(paragraph)
    # A kicker goes with a headline of some length: "Brexit" ends many a sentence.
    return key in headlines or any(
        key.endswith(h) and len(key) - len(h) <= _MAX_KICKER_CHARS
        for h in headlines if len(h) >= _MIN_KICKED_HEADLINE_CHARS)


def _grams(text: str) -> Counter[tuple[str, ...]]:
    words = _WORD.findall(text.casefold())
    return Counter(tuple(words[i:i + 4]) for i in range(len(words) - 3))


def _share(part: Counter[tuple[str, ...]], whole: Counter[tuple[str, ...]]) -> float:
    """The share of `part`'s word 4-grams that `whole` holds too (none when it has none)."""
    total = sum(part.values())
    return sum((part & whole).values()) / total if total else 0.0


# --- metadata --------------------------------------------------------------------------------


class _PageMeta:
    """The page's own structured metadata: JSON-LD article node, <meta> tags, <link>, <html>."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.metas: dict[str, list[str]] = {}
        self.article: dict[str, Any] = {}
        self.page: dict[str, Any] = {}
        self.canonical: str | None = None
        self.html_lang: str | None = None
        self.title_tag: str | None = None
        self.h1: list[str] = []
        self.by_id: dict[str, dict[str, Any]] = {}

    @classmethod
    def read(cls, tree: HtmlElement, url: str | None) -> _PageMeta:
        meta = cls(url)
        for element in tree.iter("meta"):
            key = (element.get("property") or element.get("name") or element.get("itemprop")
                   or element.get("http-equiv") or "").strip().lower()
            value = _clean(element.get("content") or "")
            if key and value:
                meta.metas.setdefault(key, []).append(value)
        for element in tree.iter("link"):
            if "canonical" in (element.get("rel") or "").lower().split() and element.get("href"):
                meta.canonical = element.get("href", "").strip()
                break
        meta.html_lang = tree.get("lang") or tree.get("xml:lang")
        title = tree.find(".//title")
        meta.title_tag = _clean(title.text_content()) if title is not None else None
        meta.h1 = [t for t in (_clean(h.text_content()) for h in tree.iter("h1")) if t]
        for node in _json_ld_nodes(tree):
            if isinstance(node.get("@id"), str) and len(node) > 2:
                meta.by_id.setdefault(node["@id"], node)
            types = {str(t).lower() for t in _as_list(node.get("@type"))}
            if types & _ARTICLE_TYPES and not meta.article:
                meta.article = node
            elif types & _PAGE_TYPES and not meta.page:
                meta.page = node
        return meta

    def ld_body(self) -> str:
        body = self.article.get("articleBody") if self.article else None
        return _clean(body) if isinstance(body, str) else ""

    def _meta(self, key: str) -> str | None:
        return next(iter(self.metas.get(key, [])), None)

    def _ld(self, key: str) -> Any:
        return self.article.get(key) if self.article else self.page.get(key)

    def first(self, kind: str) -> str | None:
        """The first value for `kind` among the sources that carry it, best first."""
        for value in self._candidates(kind):
            if value:
                return value
        return None

    def _candidates(self, kind: str) -> Iterator[str]:
        metas, ld_key = _META_SOURCES[kind]
        for key in metas:
            yield from self.metas.get(key, [])
        if ld_key:
            value = self._ld(ld_key)
            if isinstance(value, str):
                yield _clean(value)

    def descriptions(self) -> list[str]:
        """The page's summary of the article, as each source states it (spaces collapsed)."""
        raw = [*self.metas.get("description", []), *self.metas.get("og:description", []),
               _ld_text(self._ld("description")), *self.metas.get("twitter:description", [])]
        return _unique(r for r in raw if r)

    def headlines(self, h1: bool = True) -> list[str]:
        """The page's headline as each source states it, the site's name cut, best first.

        Without `h1`, only what the page's metadata states (the first <h1> may be a teaser's).
        """
        return [text for source, text in self._headlines().items() if h1 or source != "h1"]

    def _headlines(self) -> dict[str, str]:
        # Order measured on the dev set: the JSON-LD headline matched the reference most often,
        # then og:title; letting the sources vote did worse (sites pick different ones).
        site = self.site_name()
        raw = {"ld": _ld_text(self._ld("headline")), "og": self._meta("og:title"),
               "tag": self.title_tag, "h1": next(iter(self.h1), None),
               "twitter": self._meta("twitter:title")}
        return {source: text for source, value in raw.items()
                if value and (text := strip_site_suffix(value, site, self.url))}

    def title(self) -> str:
        sources = self._headlines()
        if _describes_the_page(sources):
            # Encyclopedia-like pages put a short description in the JSON-LD headline ("Capital
            # city of …") and the name of the thing everywhere else ("Berlin").
            del sources["ld"]
        candidates = list(sources.values())
        if not candidates:
            return ""
        best = candidates[0]
        ld, og = sources.get("ld", ""), sources.get("og", "")
        # Where JSON-LD and og:title differ (70 dev pages), the reference takes og:title far more
        # often when <title> repeats the JSON-LD headline: right on 51 pages with this rule, 38
        # with JSON-LD first (chosen among all one- and two-feature rules on the sources'
        # agreement, leave-one-publisher-out).
        if ld and og and _fold(sources.get("tag", "")) == _fold(ld) != _fold(og):
            best = og
        # "Headline | Sport" when another source says "Headline": the tail is a section label.
        for other in candidates:
            rest = best[len(other):] if best.startswith(other) else ""
            separator = _TITLE_SEPARATORS.match(rest)
            if separator and len(rest[separator.end():].split()) <= 3:
                return other
        return best

    def site_name(self) -> str | None:
        for value in self.metas.get("og:site_name", []):
            return value
        publisher = self._ld("publisher")
        for node in _as_list(publisher):
            name = _ld_text(node.get("name")) if isinstance(node, dict) else _ld_text(node)
            if name:
                return name
        for value in self.metas.get("application-name", []):
            return value
        host = urlsplit(self.canonical_url() or self.url or "").hostname
        return host.removeprefix("www.") if host else None

    def _organisations(self) -> set[str]:
        """Comparison keys of the site's own names: a byline naming them names no person."""
        names = {_ld_text(node.get("name")) if isinstance(node, dict) else None
                 for node in _as_list(self._ld("publisher"))}
        keys = _site_keys(self.site_name(), self.canonical_url() or self.url)
        return keys | {_fold(n) for n in names if n}

    def bylines(self, tree: HtmlElement) -> tuple[list[str], list[str]]:
        """The article's authors (people) and credits (organisations: agencies, the site, a desk).

        Sources best first; the first that names a person wins, and its credits go with the
        names (the LD author list "Jane Doe, dpa"). A source that names only organisations,
        e-mail addresses or profile URLs gives way to the next; one that names only agencies
        ends the search (a wire story). With no person anywhere, the first credit found stands.
        """
        organisations = self._organisations()
        first_credits: list[str] = []
        for heuristic, (raw, typed_credits) in enumerate(self._author_sources(tree)):
            found = _unique([*typed_credits, *clean_credits(raw, organisations)])
            names = clean_authors(raw, organisations)
            # A byline found by looking (not stated in the metadata) that names no full name is
            # too weak: "Eddie" under a blog post, "Hire" in a sidebar.
            if names and (heuristic < 2 or any(" " in n or not n.isascii() for n in names)):
                # Beside named people the site itself is no credit (it publishes everything);
                # an agency or another organisation is.
                return names, [c for c in found if not names_site(c, organisations)
                               or _fold(c) in WIRE_AGENCIES]
            first_credits = first_credits or found
            if credits_agencies_only(raw):
                break
        return [], first_credits

    def _author_sources(self, tree: HtmlElement) -> Iterator[tuple[list[str], list[str]]]:
        # Each source: its byline entries, and the names it types as organisations.
        yield self._ld_people(), self._ld_organisations()
        yield [v for key in _AUTHOR_METAS for v in self.metas.get(key, [])], []
        byline = _trafilatura_author(tree)  # the slowest source: only when the others fail
        yield (byline.split(";") if byline else []), []
        for shown in _shown_bylines(tree):
            yield shown, []

    def _ld_authors(self) -> Iterator[tuple[str, bool]]:
        """The names in JSON-LD `author`/`creator`, each with whether a type calls it a person."""
        for entry in _flat(_as_list(self._ld("author")) + _as_list(self._ld("creator"))):
            node = entry
            if isinstance(node, dict):
                # {"@id": …} points at a node elsewhere in the graph.
                node = self.by_id.get(str(node.get("@id")), node) if len(node) <= 2 else node
                types = {str(t).lower() for t in _as_list(node.get("@type"))}
                name = _ld_text(node.get("name"))
                if not name and (node.get("givenName") or node.get("familyName")):
                    name = f"{_ld_text(node.get('givenName')) or ''} "\
                           f"{_ld_text(node.get('familyName')) or ''}"
                if name:
                    yield name, not types or "person" in types
            elif isinstance(node, str):
                yield node, True

    def _ld_people(self) -> list[str]:
        # An all-lower-case name typed a person by the publisher is still one ("viktor hedlund").
        return [name.title() if _is_lower_case_name(name) else name
                for name, person in self._ld_authors() if person]

    def _ld_organisations(self) -> list[str]:
        return [_clean(name) for name, person in self._ld_authors()
                if not person and len(_clean(name)) <= MAX_CREDIT_CHARS]

    def _dates(self, ld_key: str, meta_keys: Iterable[str]) -> Iterator[str]:
        value = self._ld(ld_key)
        for item in _as_list(value):
            if isinstance(item, str):
                yield item
        for key in meta_keys:
            yield from self.metas.get(key, [])

    def published(self, tree: HtmlElement, url: str | None) -> datetime | None:
        now = datetime.now(UTC)
        for raw in self._dates("datePublished", _PUBLISHED_METAS):
            parsed = parse_date(raw, now)
            if parsed:
                return parsed
        for raw in self._dates("dateCreated", ()):
            parsed = parse_date(raw, now)
            if parsed:
                return parsed
        for element in tree.iter("time"):
            parsed = parse_date(element.get("datetime") or "", now)
            if parsed:
                return parsed
        return _htmldate(tree, url, now)

    def modified(self) -> datetime | None:
        now = datetime.now(UTC)
        for raw in self._dates("dateModified", _MODIFIED_METAS):
            parsed = parse_date(raw, now)
            if parsed:
                return parsed
        return None

    def language(self) -> str | None:
        candidates = [_ld_text(self._ld("inLanguage")), self.html_lang,
                      *self.metas.get("og:locale", []), *self.metas.get("content-language", []),
                      *self.metas.get("language", []), *self.metas.get("dc.language", [])]
        for candidate in candidates:
            code = iso_639_1(candidate)
            if code:
                return code
        return None

    def canonical_url(self) -> str | None:
        candidates = [self.canonical, *self.metas.get("og:url", [])]
        ld_url = self._ld("url") or self._ld("mainEntityOfPage")
        if isinstance(ld_url, dict):
            ld_url = ld_url.get("@id") or ld_url.get("url")
        if isinstance(ld_url, str):
            candidates.append(ld_url)
        for candidate in candidates:
            if candidate and candidate.strip():
                absolute = urljoin(self.url or "", candidate.strip())
                if absolute.startswith(("http://", "https://")):
                    return absolute
        return None

    def image(self) -> str | None:
        candidates = list(self._candidates("image"))
        for node in _as_list(self._ld("image")):
            found = node.get("url") or node.get("contentUrl") if isinstance(node, dict) else node
            if isinstance(found, str):
                candidates.append(found)
        for candidate in candidates:
            if candidate:
                return urljoin(self.canonical_url() or self.url or "", candidate)
        return None

    def tags(self) -> list[str]:
        raw: list[str] = list(self.metas.get("article:tag", []))
        keywords = self._ld("keywords")
        for item in _as_list(keywords):
            if isinstance(item, str):
                raw.extend(item.split(","))
        for key in ("news_keywords", "keywords"):
            for value in self.metas.get(key, []):
                raw.extend(value.split(","))
        return _unique(t for t in (_clean(r) for r in raw) if t and len(t) <= 80)

    def paywalled(self) -> bool:
        """Whether the page says its text is cut for non-subscribers (schema.org or meta)."""
        nodes = [self.article or self.page]
        nodes += [n for n in _as_list(nodes[0].get("hasPart")) if isinstance(n, dict)]
        flags = [n.get("isAccessibleForFree") for n in nodes if isinstance(n, dict)]
        flags += self.metas.get("isaccessibleforfree", [])  # microdata <meta itemprop=…>
        if any(f is False or str(f).strip().lower() in {"false", "no", "0"} for f in flags):
            return True
        tiers = {v.lower() for key in ("article:content_tier", "og:article:content_tier")
                 for v in self.metas.get(key, [])}
        return bool(tiers & {"locked", "metered", "premium"})


# Where a field lives: <meta> keys, best first, then the JSON-LD key (if any) as a last resort.
_META_SOURCES: dict[str, tuple[list[str], str | None]] = {
    "description": (["description", "og:description", "twitter:description"], "description"),
    "image": (["og:image", "og:image:url", "og:image:secure_url", "twitter:image"], None),
}
_PUBLISHED_METAS = (
    "article:published_time", "og:article:published_time", "datepublished", "pubdate",
    "publishdate", "publish-date", "publication_date", "date", "dc.date.issued", "dc.date",
    "dcterms.date", "sailthru.date", "parsely-pub-date", "article.published", "published_time",
)
_AUTHOR_METAS = ("author", "article:author", "dc.creator", "sailthru.author", "parsely-author",
                 "byl", "twitter:misc:written by")
_MODIFIED_METAS = (
    "article:modified_time", "og:updated_time", "datemodified", "last-modified", "dc.date.modified",
    "dcterms.modified", "article.updated",
)


def _describes_the_page(sources: dict[str, str]) -> bool:
    """Whether the JSON-LD headline describes the page rather than names it: it shares no word
    with any other source's title, and at least two of those agree on one."""
    ld = sources.get("ld")
    others = [_fold(text) for source, text in sources.items() if source != "ld"]
    if not ld or len(others) < 2 or len(set(others)) == len(others):
        return False
    words = {w.casefold() for text in sources.values() if text != ld for w in _WORD.findall(text)}
    return words.isdisjoint(w.casefold() for w in _WORD.findall(ld))


def _shown_bylines(tree: HtmlElement) -> Iterator[list[str]]:
    """Credits as the page shows them below its headline, in page order: a labelled line ("Von
    Jane Doe", "Autor: Jane Doe") or a link to a contributor's profile page, with the other such
    links beside it (co-authors).

    For pages that state their authors nowhere else (measured on the dev set: right on 88 % of
    pages for links, 73 % for labels, so only when every other source is silent).
    """
    body = tree.find(".//body")
    if body is None:
        return
    headline = body.find(".//h1")
    started = headline is None  # a credit above the headline belongs to a teaser
    for element in body.iter():
        if element is headline:
            started = True
        if not started or not isinstance(element.tag, str) or element.tag in _INVISIBLE:
            continue
        if element.tag == "a" and _is_profile_link(element):
            parent = element.getparent()
            yield [a.text_content() for a in (parent if parent is not None else element).iter("a")
                   if _is_profile_link(a)]
        elif element.tag in _BYLINE_TAGS and _LABEL_START.match(_first_text(element)):
            line = _clean(element.text_content())
            if 1 < len(line.split()) <= _MAX_SHOWN_BYLINE_WORDS and BYLINE_PREFIX.match(line):
                # A label makes any line look like a credit ("Text Size"): full names only.
                yield [name for name in clean_authors([line]) if " " in name]


def _first_text(element: HtmlElement) -> str:
    # The element's first words, read without building its whole text (most are long).
    return next((t for t in element.itertext() if t.strip()), "").lstrip()


def _is_profile_link(link: HtmlElement) -> bool:
    if "author" in (link.get("rel") or "").lower().split():
        return True
    # A segment before the last: "/autor/jane-doe", never the "/authors/" index page itself.
    segments = urlsplit(link.get("href") or "").path.lower().rstrip("/").split("/")[:-1]
    return not _PROFILE_SEGMENTS.isdisjoint(segments)


def _htmldate(tree: HtmlElement, url: str | None, now: datetime) -> datetime | None:
    # Heuristic date search, only when the page states no date in its metadata: it is slow.
    found = find_date(tree, extensive_search=False, original_date=True, url=url,
                      outputformat="%Y-%m-%d")
    return parse_date(found, now) if found else None


# --- JSON-LD ---------------------------------------------------------------------------------


def _json_ld_nodes(tree: HtmlElement) -> Iterator[dict[str, Any]]:
    for script in tree.iter("script"):
        if "ld+json" not in (script.get("type") or "").lower():
            continue
        raw = (script.text or "").strip()
        raw = re.sub(r"^\s*(?://)?\s*<!\[CDATA\[|//\s*]]>\s*$|\]\]>\s*$", "", raw)
        try:
            data = json.loads(raw, strict=False)
        except ValueError:
            continue
        yield from _walk(data)


def _walk(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _walk(item)
    elif isinstance(data, dict):
        yield data
        yield from _walk(data.get("@graph"))
        # An article may hide under a page node's mainEntity.
        main = data.get("mainEntity")
        if isinstance(main, (dict, list)):
            yield from _walk(main)


def _flat(values: list[Any]) -> Iterator[Any]:
    # Lists nested in lists: `"author": [{…}, [{…}]]`.
    for value in values:
        if isinstance(value, list):
            yield from _flat(value)
        else:
            yield value


def _is_lower_case_name(name: str) -> bool:
    words = name.split()
    return 2 <= len(words) <= 4 and name.islower() and all(w.isalpha() for w in words)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ld_text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name") or value.get("@value")
    if isinstance(value, str):
        return _clean(value) or None
    return None


# --- field rules -----------------------------------------------------------------------------


def strip_site_suffix(title: str, site_name: str | None, url: str | None = None) -> str:
    """The title without a " | Site" / " - Site" suffix (or "Site | " prefix) naming the site.

    Segments after the site's name (a date, "Europa | DW | 28.04.2023") go with it.
    """
    title = _clean(title)
    names = _site_keys(site_name, url)
    spans = [(m.start(), m.end()) for m in _TITLE_SEPARATORS.finditer(title)]
    if not spans:
        return title
    starts = [0, *(end for _, end in spans)]
    ends = [*(start for start, _ in spans), len(title)]
    parts = [title[a:b] for a, b in zip(starts, ends, strict=True)]
    # The rightmost segment naming the site cuts the title there (never the first segment).
    for index in range(len(parts) - 1, 0, -1):
        if _is_site(parts[index], names) and all(
                _is_site(p, names) or _DATE_ONLY.match(p) or len(p.split()) <= 2
                for p in parts[index + 1:]):
            return title[: spans[index - 1][0]].strip()
    if _DATE_ONLY.match(parts[-1]):
        return title[: spans[-1][0]].strip()
    if _is_site(parts[0], names) and len(parts) == 2:
        return parts[1].strip()
    return title


def _site_keys(site_name: str | None, url: str | None) -> set[str]:
    names = {_fold(site_name)} if site_name else set()
    host = urlsplit(url or "").hostname
    if host:
        labels = host.removeprefix("www.").split(".")
        names.update({_fold(host.removeprefix("www.")), _fold(labels[0])})
        if len(labels) > 1:
            names.add(_fold(labels[-2]))
    names.discard("")
    # Domains spell umlauts out ("boersen-zeitung.de" for "Börsen-Zeitung").
    names |= {n.replace("ae", "a").replace("oe", "o").replace("ue", "u") for n in names}
    return names


def _is_site(part: str, names: set[str]) -> bool:
    key = _fold(part)
    if not key:
        return False
    key_plain = key.replace("ae", "a").replace("oe", "o").replace("ue", "u")
    return any(k == n or (len(n) > 3 and len(k) > 1 and (n in k or k in n))
               for n in names for k in (key, key_plain))


def parse_date(raw: str, now: datetime | None = None) -> datetime | None:
    """A timezone-aware datetime (UTC when no zone is given), or None if unparsable or future."""
    raw = raw.strip()
    if not raw:
        return None
    parsed: datetime | None = None
    candidate = raw.replace(" ", "T", 1) if re.match(r"\d{4}-\d\d-\d\d \d", raw) else raw
    candidate = re.sub(r"(\.\d{6})\d+", r"\1", candidate)  # fromisoformat takes microseconds
    candidate = re.sub(r"([+-]\d\d)$", r"\1:00", candidate)  # "+02" zone without minutes
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            match = re.match(r"(\d{4})[-/.](\d\d)[-/.](\d\d)", raw)
            if match:
                try:
                    parsed = datetime(int(match[1]), int(match[2]), int(match[3]))
                except ValueError:
                    parsed = None
    if parsed is None or parsed.year < 1990:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed > (now or datetime.now(UTC)):
        return None
    return parsed


def iso_639_1(value: str | None) -> str | None:
    """The two-letter language code in "en", "en-US", "de_DE", or None."""
    if not value:
        return None
    code = re.split(r"[-_\s]", value.strip().lower(), maxsplit=1)[0]
    return code if len(code) == 2 and code.isalpha() else None
