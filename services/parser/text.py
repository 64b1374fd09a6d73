"""Text helpers the parser's modules share: a value's text cleaned, and its comparison key."""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from collections.abc import Iterable

# Hyphenation and layout hints inside words (soft hyphen, zero-width space, word joiner, BOM): shown
# as nothing, but they split "Brenn\xadpunkt" in two for search.
INVISIBLE_CHARS = re.compile("[\u00ad\u200b\u2060\ufeff]")


def clean(text: str) -> str:
    """The text with entities decoded, invisible characters dropped and spaces collapsed."""
    return " ".join(INVISIBLE_CHARS.sub("", html_lib.unescape(text)).split())


def fold(text: str) -> str:
    """A comparison key: case, accents, spacing and punctuation removed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if c.isalnum())


def unique(items: Iterable[str]) -> list[str]:
    """The items without repeats (compared by `fold`), first spelling kept, order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = fold(item)
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out
