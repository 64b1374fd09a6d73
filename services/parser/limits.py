"""Pages the parser cannot read as they are: too many elements (refused before any parse) and
nesting deeper than libxml2 goes (flattened, so the text survives). Run in the worker."""

from __future__ import annotations

import re
from collections import Counter

from shared.errors import PermanentError

from .extract import Extraction, extract_article

# libxml2 stops at 256 levels of elements ("Excessive depth in document") and drops the rest of
# the page without an error, so a page of 100,000 nested <div>s lost all its text. Elements
# deeper than this many levels of the ones counted below lose their tags (not their text); the
# margin is for the elements not counted (p, li, td…), which close themselves.
MAX_DEPTH = 100

# A tag's name, or its end. Hand-written rather than a parser's: the parser is what fails on
# these pages, and a regex over the source costs ~0.3 µs a tag (30 ms for 100,000).
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
_OPENING = re.compile(r"<[A-Za-z]")

# Elements that never hold others, or that the HTML parser closes by itself at the next of their
# kind: counting them would make ordinary pages look deep.
_NOT_NESTING = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr", "keygen", "command", "basefont", "frame", "isindex",
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot",
    "colgroup", "caption", "rb", "rt", "rp", "rtc",
})


class TooManyElements(PermanentError):
    """The page has more elements than a parse is allowed to build."""


def count_elements(html: str, at_most: int = 0) -> int:
    """The elements in `html`, counted by their opening tags (no parse). With `at_most`, a page
    whose every "<" together is no more than that is not counted exactly (a bound at C speed,
    ~1 ms a MB): the exact count is only for the pages that may be over."""
    if at_most and (bound := html.count("<")) <= at_most:
        return bound
    return len(_OPENING.findall(html))


def max_depth(html: str) -> int:
    """How deep the counted elements nest (an estimate from the tags, as the parser nests them:
    an end tag closes what is open inside its element)."""
    return _walk(html, flatten_below=None)[0]


def flatten(html: str, depth: int = MAX_DEPTH) -> str:
    """`html` with the tags of the elements nested deeper than `depth` removed, their text and
    their shallower ancestors kept."""
    return _walk(html, flatten_below=depth)[1]


def _walk(html: str, flatten_below: int | None) -> tuple[int, str]:
    """One pass over the tags: the deepest nesting, and (when `flatten_below` is given) the page
    without the tags below that depth."""
    stack: list[tuple[str, bool]] = []  # (name, its tags dropped)
    open_names: Counter[str] = Counter()
    deepest = 0
    kept: list[str] = []
    start = 0  # where the text not yet copied to `kept` begins

    def drop(match: re.Match[str]) -> None:
        nonlocal start
        # A line break in the tag's place keeps the words of two elements apart.
        kept.extend((html[start:match.start()], "\n"))
        start = match.end()

    for match in _TAG.finditer(html):
        closing, name, self_closing = match.groups()
        name = name.lower()
        if name in _NOT_NESTING or self_closing:
            continue
        if not closing:
            dropped = flatten_below is not None and len(stack) >= flatten_below
            stack.append((name, dropped))
            open_names[name] += 1
            deepest = max(deepest, len(stack))
            if dropped:
                drop(match)
        elif open_names[name]:
            # The end tag closes its element and whatever was left open inside it.
            while stack:
                inner, dropped = stack.pop()
                open_names[inner] -= 1
                if inner == name:
                    if dropped:
                        drop(match)
                    break
    if not kept:
        return deepest, html
    kept.append(html[start:])
    return deepest, "".join(kept)


def extract_page(html: str, url: str | None, max_elements: int) -> Extraction:
    """extract_article, guarded: a page of over `max_elements` elements is refused before it is
    parsed (its tree would take gigabytes), and deep nesting is flattened first."""
    elements = count_elements(html, at_most=max_elements)
    if max_elements and elements > max_elements:
        raise TooManyElements(
            f"too many elements: {elements:,} (NEWSFLOW_PARSE_MAX_ELEMENTS is {max_elements:,})")
    if elements > MAX_DEPTH:
        deepest = max_depth(html)
        if deepest > MAX_DEPTH:
            html = flatten(html)
    return extract_article(html, url)
