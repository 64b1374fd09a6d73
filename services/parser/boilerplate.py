"""Drop what extractors keep inside an article: teaser blocks, prompts, repeated credits."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from lxml.html import HtmlElement

# Headings that open a block of links to *other* pages (teasers, rankings). The mechanism is
# structural (a short heading and the block it leads); this list only recognises the heading, in
# the languages news pages are most often written in. Keys are folded (see `_fold`).
_TEASER_HEADINGS = (
    # en
    "related", "related articles", "related stories", "related content", "related news",
    "related posts", "related topics", "read more", "read also", "also read", "see also",
    "more on this", "more on this topic", "more on this story", "more from", "more stories",
    "more news", "editors choice", "editors picks", "editor s choice", "popular", "most popular",
    "most read", "most viewed", "trending", "recommended", "recommended for you",
    "you may also like", "you might also like", "top stories", "latest news", "latest",
    "further reading", "in other news", "what to read next", "read next", "up next",
    # de
    "lesen sie auch", "lesen sie mehr", "mehr zum thema", "mehr zu diesem thema", "weitere artikel",
    "das konnte sie auch interessieren", "das konnte sie interessieren", "meistgelesen",
    "meistgelesene artikel", "beliebt", "empfehlungen", "unsere empfehlung", "auch interessant",
    "weitere nachrichten", "top themen", "ebenfalls interessant", "verwandte artikel", "zum thema",
    "mehr aus dem ressort", "neueste artikel",
    # fr
    "lire aussi", "a lire aussi", "a lire egalement", "sur le meme sujet", "les plus lus",
    "a la une", "voir aussi", "articles lies", "nos articles", "populaire",
    # es / pt / it / ca
    "lee tambien", "leer mas", "te puede interesar", "mas leidas", "mas leido", "relacionados",
    "noticias relacionadas", "leia tambem", "leia mais", "mais lidas", "veja tambem",
    "leggi anche", "potrebbe interessarti", "piu letti", "articoli correlati", "correlati",
    # nl / nordic / pl / others
    "lees ook", "meest gelezen", "gerelateerd", "las ogsa", "les ogsa", "laes ogsa", "mest last",
    "mest lest", "mest laest", "lue myos", "luetuimmat", "czytaj takze", "czytaj rowniez",
    "czytaj wiecej",
    "najczesciej czytane", "precti si take", "nejctenejsi", "citajte i", "procitajte i",
    "citeste si", "olvassa el", "okuyun", "ilginizi cekebilir", "читаите также", "по теме",
    "популярное",
    # zh / ja / ko
    "相关新闻", "相关阅读", "相关文章", "相關新聞", "相關文章", "延伸阅读", "延伸閱讀", "推荐阅读",
    "热门新闻", "熱門新聞", "関連記事", "関連ニュース", "関連キーワード", "おすすめ記事",
    "おすすめ情報", "人気記事", "アクセスランキング", "관련기사", "관련 기사", "많이 본 뉴스",
    "인기 기사", "추천 기사",
)
# Calls to action that are never article text: newsletter, subscription and cookie prompts.
_PROMPT_WORDS = (
    "newsletter", "cookie", "cookies", "subscribe", "abonnieren", "abonnez", "suscribete",
    "iscriviti", "inscrivez", "sign up", "anmelden", "registrieren", "follow us", "folgen sie uns",
    "share this", "teilen", "partager", "advertisement", "anzeige", "werbung", "publicite",
)
# What a page shows in place of an embed it may not load without consent (a chart, a post).
_CONSENT_NOTICES = (
    "external content", "third party content", "externer inhalt", "externen inhalt",
    "externe inhalt", "externe inhalte", "externen inhalte", "empfohlener redaktioneller inhalt",
    "ein klick fur den datenschutz", "inhalte von drittanbietern", "an drittplattformen",
    "privatsphare einstellungen verhindern", "contenu externe", "contenido externo",
)
# Calls to action that close an article: write in, log in, comment, get the app, support us.
_CLOSING_PROMPTS = (
    "get in touch", "got a story", "story to tell", "click here", "tap here", "log in or",
    "create an account", "get the app", "download the app", "join our", "follow us",
    "display name", "bookmark", "jetzt melden", "fehler gefunden", "unterstützen sie uns",
    "kommentar abzugeben", "einloggen", "folgen sie uns", "abonnez-vous", "suscríbete",
    "iscriviti",
)
# A notice that the rest is for subscribers: the text is cut, the page paywalled.
_TRUNCATION_NOTICES = (
    "subscribe to continue", "subscribe to read", "subscribers only", "for subscribers only",
    "exclusively for subscribers", "already a subscriber", "unlock this article",
    "to continue reading", "réservée aux abonnés", "réservé aux abonnés", "déjà abonné",
    "nur für abonnenten", "exklusiv für abonnenten", "bereits abonnent", "schon abonnent",
    "exclusivo para suscriptores", "solo para suscriptores", "ya eres suscriptor",
    "riservato agli abbonati", "già abbonato", "alleen voor abonnees", "al abonnee",
    "この記事は会員限定です", "有料会員になると", "続きを読むには", "会員登録すると続きを",
    "付费阅读", "订阅后阅读", "訂閱後閱讀", "유료 회원 전용", "구독자 전용",
)
# These close an article too, but a news sentence may name them ("subscription revenue rose"):
# only in a line that speaks to the reader.
_READER_PROMPTS = (
    "sign up", "signing up", "newsletter", "newsletters", "subscribe", "subscription",
    "abonnieren", "login", "log in",
)
_READER = (
    "you", "your", "our", "us", "we", "sie", "ihr", "ihre", "uns", "unser", "unsere", "unseren",
    "du", "dich", "dein", "vous", "votre", "nous", "nos",
)
# Matched from a word's start only: trying every position of a long unbroken run (a blob of
# script) took seconds.
EMAIL = re.compile(r"(?<!\S)\S+@\S+\.\w+")
"""An e-mail address: a contact line's ("Email: jane@example.com"), or one inside a byline."""
# Where and how long: the last paragraphs, a few sentences; a contact line is a label and address.
_CLOSING_ZONE = 5
_MAX_CLOSING_PROMPT_WORDS = 45
_MAX_CONTACT_WORDS = 10
# A consent notice explains itself at length: what loads, from whom, with which data.
_MAX_CONSENT_WORDS = 60
# The article's last full paragraph has at least this many words; a run of at least
# _MIN_CLOSING_RUN lines of at most that many words after it is the page's furniture.
_MIN_FULL_PARAGRAPH_WORDS = 12
_MIN_CLOSING_RUN = 3
# A line that ends as a sentence does: a full stop or an ellipsis, perhaps inside quotes.
_SENTENCE_END = re.compile(r"\w[.…]['\"’”“»«]*$")
# A copyright notice is page furniture, whatever the language.
_COPYRIGHT = re.compile(r"^(?:©|\(c\)|copyright\b)", re.IGNORECASE)
_MAX_LABEL_CHARS = 60
_MAX_PROMPT_WORDS = 12
# A list of at least this many items, each mostly link text (a link and perhaps a short label:
# "Politics: <a>headline</a>"), is a list of links; measured on the dev set (0.9 and 0.7 kept
# labelled teaser lists), a sentence with a link in it stays.
_MIN_LINK_LIST_ITEMS = 2
_LINK_SHARE = 0.5
# A headline shorter than this is matched only whole.
_MIN_HEADLINE_CHARS = 12
# The classes the social networks' embed code puts on the <blockquote> of an embedded post.
_EMBED_CLASSES = frozenset({"twitter-tweet", "instagram-media", "tiktok-embed", "bluesky-embed"})
# A paragraph this long is text, never a teaser's blurb.
_PROSE_WORDS = 30
# After a teaser heading and its list, a paragraph this long that is not a link is the article's
# text again.
_PROSE_PARAGRAPH_WORDS = 15
_HEADINGS = ("h2", "h3", "h4", "h5", "h6")
# Containers a block may never grow into: the page or the article itself.
_STOP_TAGS = frozenset({"body", "html", "main", "article"})


# Combining marks left by NFKD ("é" → "e" + U+0301): the Latin, Greek and Cyrillic accents that
# the keys above are written without.
_ACCENTS = re.compile(r"[\u0300-\u036f]")
_NON_WORD = re.compile(r"[\W_]+")
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""Han and kana: the scripts of Chinese and Japanese, which put no spaces between words."""
_UNSPACED = re.compile(f"[{CJK}]")
# In Chinese or Japanese text: a Han or kana character, or a run between spaces with a letter or
# digit in it (not "、" or "。").
_COUNTED_WORD = re.compile(rf"[{CJK}]|[^\s{CJK}]*[^\W{CJK}][^\s{CJK}]*")


def count_words(text: str) -> int:
    """Words as word processors count them: runs between spaces, and each Han or kana character."""
    if _UNSPACED.search(text) is None:
        return len(text.split())  # the common case, and 8 times faster
    return len(_COUNTED_WORD.findall(text))


def _fold(text: str) -> str:
    """Lower case, no accents, punctuation as spaces: "Editor's choice:" → "editor s choice"."""
    folded = text.casefold()
    if not folded.isascii():  # the common case skips the decomposition (it runs per line)
        # Recomposed after: kana keep their voicing marks ("ガ" is not "カ" and a space).
        folded = unicodedata.normalize(
            "NFC", _ACCENTS.sub("", unicodedata.normalize("NFKD", folded)))
    return " ".join(_NON_WORD.sub(" ", folded).split())


_TEASER_KEYS = frozenset(_fold(h) for h in _TEASER_HEADINGS) | frozenset(
    _fold(h).replace(" s ", "s ") for h in _TEASER_HEADINGS
)


def _any_of(phrases: Iterable[str]) -> re.Pattern[str]:
    """A pattern for folded text that finds any of `phrases` as whole words.

    Chinese and Japanese run words together: their phrases are found anywhere.
    """
    keys = [_fold(p) for p in phrases]
    spaced = "|".join(re.escape(k) for k in keys if not _UNSPACED.search(k))
    unspaced = "|".join(re.escape(k) for k in keys if _UNSPACED.search(k))
    return re.compile("|".join(filter(None, (spaced and rf"\b(?:{spaced})\b", unspaced))))


_PROMPT_PATTERN = _any_of(_PROMPT_WORDS)
_CLOSING_PATTERN = _any_of(_CLOSING_PROMPTS + _TRUNCATION_NOTICES)
_TRUNCATION_PATTERN = _any_of(_TRUNCATION_NOTICES)
_CONSENT_PATTERN = _any_of(_CONSENT_NOTICES)
_READER_PROMPT_PATTERN = _any_of(_READER_PROMPTS)
_READER_PATTERN = _any_of(_READER)


def is_teaser_heading(text: str) -> bool:
    """Whether `text` heads links to other articles ("Related", "Popular", "Lesen Sie auch")."""
    key = _fold(text)
    if not key or len(key) > _MAX_LABEL_CHARS:
        return False
    if key in _TEASER_KEYS:
        return True
    # "More from Example", "Mehr zum Thema Ukraine": a known opening plus a few words.
    words = key.split()
    return any(" ".join(words[:n]) in _TEASER_KEYS for n in (2, 3, 4) if len(words) - n <= 3
               and n < len(words))


def is_teaser_link(text: str) -> bool:
    """Whether a line is a "Read also: <other headline>" link to another article."""
    label, colon, rest = text.partition(":")
    if not colon or not rest.strip() or len(label) > 30:
        return False
    return is_teaser_heading(label) or _fold(label) == "more"


def is_prompt(text: str) -> bool:
    """Whether a short line is a newsletter, subscription, sharing or cookie prompt."""
    key = _fold(text)
    # A notice that the text is cut is left for `cut_at_paywall` to read (the paywall flag).
    return (bool(key) and count_words(key) <= _MAX_PROMPT_WORDS
            and bool(_PROMPT_PATTERN.search(key)) and not _TRUNCATION_PATTERN.search(key))


def drop_closing_prompts(paragraphs: list[str]) -> list[str]:
    """The paragraphs without the calls to action among the article's last few."""
    start = max(0, len(paragraphs) - _CLOSING_ZONE)
    return paragraphs[:start] + [p for p in paragraphs[start:] if not is_closing_prompt(p)]


def drop_closing_fragments(paragraphs: list[str]) -> list[str]:
    """The paragraphs without a run of short lines after the article's last full paragraph.

    Such a run is what the page puts below the article (tag lists, "Similar:" links, app and
    comment prompts, the sidebar's headings), which extractors keep when it shares a container
    with the text. A run with a sentence in it (a closing list of quotes) is the article's own.
    Measured on the dev set: +0.0006 body F1; every run it cut was furniture but one page's photo
    credits.
    """
    last = next((i for i in range(len(paragraphs) - 1, -1, -1)
                 if count_words(paragraphs[i]) >= _MIN_FULL_PARAGRAPH_WORDS), None)
    if last is None or len(paragraphs) - last - 1 < _MIN_CLOSING_RUN:
        return paragraphs
    run = paragraphs[last + 1:]
    return paragraphs if any(_SENTENCE_END.search(p) for p in run) else paragraphs[:last + 1]


def cut_at_paywall(paragraphs: list[str]) -> tuple[list[str], bool]:
    """The text before a notice that the rest is for subscribers, and whether there was one.

    What follows such a notice is its sales pitch, never the article. A notice before most of the
    text (a "for subscribers" badge over an article served whole) cuts nothing and sets no flag.
    """
    total = sum(map(count_words, paragraphs))
    before = 0
    for index, paragraph in enumerate(paragraphs):
        words = count_words(paragraph)
        if (index and words <= _MAX_CLOSING_PROMPT_WORDS and 2 * before > total
                and _TRUNCATION_PATTERN.search(_fold(paragraph))):
            return paragraphs[:index], True
        before += words
    return paragraphs, False


def is_closing_prompt(text: str) -> bool:
    """Whether a line asks the reader to do something: write in, log in, sign up, support us."""
    key = _fold(text)
    words = count_words(key)
    if words > _MAX_CLOSING_PROMPT_WORDS:
        return False
    if words <= _MAX_CONTACT_WORDS and EMAIL.search(text):
        return True
    return bool(_CLOSING_PATTERN.search(key)) or bool(
        _READER_PROMPT_PATTERN.search(key) and _READER_PATTERN.search(key))


def drop_boilerplate_blocks(tree: HtmlElement) -> None:
    """Remove, in place, each teaser heading and the block it opens, wherever it sits."""
    doomed: list[HtmlElement] = []
    for element in tree.iter(*_HEADINGS, "div", "p", "span", "strong", "b", "header", "section"):
        if element.tag not in _HEADINGS and (len(element) > 1 or element.tag in _STOP_TAGS):
            continue
        text = element.text_content()
        if len(text) > _MAX_LABEL_CHARS * 2 or not is_teaser_heading(text):
            continue
        doomed.extend(_block_of(element))
    for element in doomed:
        parent = element.getparent()
        if parent is not None:
            # Keep the tail: it is text of the parent that follows the removed element.
            _drop_keep_tail(element)


def drop_social_embeds(tree: HtmlElement) -> None:
    """Remove, in place, embedded social-media posts: quoted third-party content, not the text.

    The platforms' embed code marks them with a class of its own on a <blockquote>.
    """
    doomed = [b for b in tree.iter("blockquote")
              if _EMBED_CLASSES.intersection((b.get("class") or "").split())]
    for element in doomed:
        _drop_keep_tail(element)


def drop_other_articles(tree: HtmlElement, headlines: Iterable[str]) -> None:
    """Remove, in place, the articles beside the page's own that have headlines of their own.

    Pages append the next story as the reader scrolls, and teasers come as small articles with a
    headline: the page's own story is the article whose <h1> is the page's headline (as its
    metadata states it). Without one, nothing is removed.
    """
    headed = [a for a in tree.iter("article") if a.find(".//h1") is not None]
    if len(headed) < 2:
        return
    keys = [k for k in (_fold(h) for h in headlines) if k]
    own = next((a for a in headed if _names_headline(a, keys)), None)
    if own is None:
        return
    nested = set(own.iterancestors()) | set(own.iterdescendants("article"))
    for article in headed:
        if article is not own and article not in nested:
            _drop_keep_tail(article)


def _names_headline(article: HtmlElement, headlines: list[str]) -> bool:
    h1 = article.find(".//h1")
    key = _fold(h1.text_content()) if h1 is not None else ""
    # One may hold the other ("Kicker: Headline"), but a short label ("News") names no story.
    return bool(key) and any(key == h or (min(len(key), len(h)) >= _MIN_HEADLINE_CHARS and (
        key in h or h in key)) for h in headlines)


def drop_link_lists(tree: HtmlElement) -> None:
    """Remove, in place, lists whose every item is mostly a link: teasers and menus, not text.

    A list in an article's text says something in each item; a list of links points to other
    pages ("more on this", topic links, a rubric's latest stories), whatever its heading says.
    """
    sizes: dict[HtmlElement, int] = {}  # an article's characters, counted once for all its lists
    doomed = [ul for ul in tree.iter("ul", "ol")
              if _is_link_list(ul) and not _is_the_post(ul, sizes)]
    for element in doomed:
        _drop_keep_tail(element)


def _is_the_post(element: HtmlElement, sizes: dict[HtmlElement, int]) -> bool:
    """Whether the list is the article itself: a post that is a list of links ("Reading list").

    It sits in the article (an <article> or <main> holding the headline) and holds most of its
    text; teaser lists inside an article are a small part of it.
    """
    container = next((a for a in element.iterancestors("article", "main")
                      if a.find(".//h1") is not None), None)
    if container is None:
        return False
    if container not in sizes:
        sizes[container] = len(container.text_content())
    own = len(element.text_content())
    return own >= sizes[container] - own


def _is_link_list(element: HtmlElement) -> bool:
    items = [li for li in element if li.tag == "li"]
    if len(items) < _MIN_LINK_LIST_ITEMS:
        return False
    for item in items:
        text = "".join(item.itertext()).strip()
        links = "".join(t for a in item.iter("a") for t in a.itertext()).strip()
        if not text or len(links) < _LINK_SHARE * len(text):
            return False
    return True


def _block_of(heading: HtmlElement) -> list[HtmlElement]:
    """The heading's block: the largest ancestor it opens, or itself and what follows it."""
    block = heading
    label = heading.text_content().strip()
    while True:
        parent = block.getparent()
        if parent is None or parent.tag in _STOP_TAGS or parent.find(".//h1") is not None:
            break
        if not parent.text_content().strip().startswith(label) or _holds_prose(parent, block):
            break
        block = parent
    if block is not heading or heading.tag not in _HEADINGS:
        return [block]
    # A bare heading inside the article container: its block runs to the next heading of the same
    # or a higher level.
    level = int(heading.tag[1])
    out = [heading]
    for sibling in heading.itersiblings():
        tag = sibling.tag if isinstance(sibling.tag, str) else ""
        if tag in _HEADINGS and int(tag[1]) <= level and not is_teaser_heading(
                sibling.text_content()):
            break
        if len(out) > 1 and _is_prose_paragraph(sibling):
            break  # the article's text resumes after the teasers: it is not theirs
        out.append(sibling)
    return out


def _is_prose_paragraph(element: HtmlElement) -> bool:
    """Whether `element` is a paragraph of text: a <p> of some length, mostly not a link."""
    if element.tag != "p":
        return False
    text = element.text_content()
    links = sum(len(a.text_content()) for a in element.iter("a"))
    return count_words(text) >= _PROSE_PARAGRAPH_WORDS and links < _LINK_SHARE * len(text)


def _holds_prose(parent: HtmlElement, block: HtmlElement) -> bool:
    """Whether `parent` holds, beside `block`, a paragraph of text: then it is no teaser block.

    Layouts put a sidebar's "Most read" before the article in the page's order, so the article's
    container also starts with the label.
    """
    # Counted as word processors count (each Han or kana character a word): a Chinese paragraph
    # has no spaces, and its article container was taken for the teaser block.
    return any(count_words(p.text_content()) >= _PROSE_WORDS
               for child in parent if child is not block for p in child.iter("p"))


def _drop_keep_tail(element: HtmlElement) -> None:
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    if tail and tail.strip():
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def clean_paragraphs(lines: Iterable[str]) -> list[str]:
    """Paragraphs without blanks, repeats (keep the first copy), lone teaser headings, prompts
    and consent notices."""
    seen: set[str] = set()
    kept: list[str] = []
    for raw in lines:
        line = " ".join(raw.split())
        key = _fold(line)
        if not key or key in seen:
            continue
        seen.add(key)
        words = count_words(key)
        if words <= _MAX_CONSENT_WORDS and _CONSENT_PATTERN.search(key):
            continue  # in place of an embed the reader has not let load ("External content")
        # Headings, prompts and notices are short; a long line can only be a "Read also:" link.
        short = len(key) <= _MAX_LABEL_CHARS or words <= _MAX_PROMPT_WORDS
        if is_teaser_link(line) or (short and (
                is_teaser_heading(line) or is_prompt(line)
                or (_COPYRIGHT.match(line) and words <= _MAX_PROMPT_WORDS))):
            continue
        kept.append(line)
    return kept
