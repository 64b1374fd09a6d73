"""The article's HTML as script-rendered pages ship it: inside their scripts, not their markup.

A page built in the browser (Next.js and the like) may serve almost no text in its markup and
carry the article as an HTML string in a script, for the browser to insert. No extractor reads
those strings (trafilatura drops scripts first), so this module finds them; the parser falls
back to it only when the markup holds no article text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from lxml.html import HtmlElement

# Next.js (app router) streams its render as `self.__next_f.push([1, "<JS string>"])` calls; the
# joined strings hold rows: a text row is `<id>:T<hex byte length>,<text>`, any other one line.
_NEXT_PUSH = re.compile(r'self\.__next_f\.push\(\[\s*1\s*,\s*("(?:[^"\\]|\\.)*")\s*\]\)')
_NEXT_TEXT_ROW = re.compile(rb"[0-9a-f]+:T([0-9a-f]{1,8}),")
# Script types that hold plain JSON (Next.js pages router: `<script id="__NEXT_DATA__">`).
_JSON_TYPES = frozenset({"application/json", "application/ld+json"})
_PARAGRAPH = re.compile(r"<p[\s>]", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_MIN_PARAGRAPHS = 2


def embedded_article_html(tree: HtmlElement) -> str | None:
    """The longest HTML fragment with paragraphs that the page's scripts carry, if any."""
    best: tuple[int, str] | None = None
    for fragment in _fragments(tree):
        if len(_PARAGRAPH.findall(fragment)) < _MIN_PARAGRAPHS:
            continue
        size = len(_TAG.sub("", fragment))
        if best is None or size > best[0]:
            best = (size, fragment)
    return best[1] if best else None


def _fragments(tree: HtmlElement) -> Iterator[str]:
    scripts = [((s.get("type") or "").strip().lower(), s.text or "") for s in tree.iter("script")]
    yield from _next_flight_texts(body for _, body in scripts if "__next_f" in body)
    for kind, body in scripts:
        if kind in _JSON_TYPES and "<p" in body:
            try:
                yield from _strings(json.loads(body))
            except (ValueError, RecursionError):
                continue  # not JSON after all, or nested too deep to be an article


def _next_flight_texts(scripts: Iterator[str]) -> Iterator[str]:
    parts = []
    for script in scripts:
        for literal in _NEXT_PUSH.findall(script):
            try:
                parts.append(json.loads(literal))
            except ValueError:
                continue
    payload = "".join(parts).encode()
    position = 0
    while position < len(payload):
        row = _NEXT_TEXT_ROW.match(payload, position)
        if row:  # a text row ends where its length says, newline or not
            position = row.end() + int(row.group(1), 16)
            yield payload[row.end():position].decode("utf-8", "replace")
        else:  # any other row is one line of JSON
            newline = payload.find(b"\n", position)
            position = len(payload) if newline < 0 else newline + 1


def _strings(data: Any) -> Iterator[str]:
    """Every string in a JSON document that holds HTML paragraphs."""
    if isinstance(data, str):
        if _PARAGRAPH.search(data):
            yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)
