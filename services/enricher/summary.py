"""Write a short extractive summary: the article's lead sentences."""

import re

# News is written lead-first; the first sentences beat most extractive methods on news corpora.
MAX_SENTENCES = 3
TARGET_WORDS = 40
MAX_CHARS = 400

_BOUNDARY = re.compile(r"(?<=[.!?…])([\"”’)]?)\s+(?=[\"“‘(]?[A-ZÀ-ÞА-Я0-9])")
# Full stops that do not end a sentence.
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "st", "gen", "col", "lt", "sgt", "capt", "gov",
        "sen", "rep", "jr", "sr", "inc", "corp", "ltd", "co", "no", "vs", "etc", "jan",
        "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s",
        "u.k", "e.g", "i.e"
    }
)


def split_sentences(text: str) -> list[str]:
    """Sentences of a plain text (paragraph breaks always end a sentence)."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        start = 0
        for match in _BOUNDARY.finditer(paragraph):
            last_words = paragraph[start : match.start()].rsplit(None, 1)
            before = last_words[-1].rstrip(".").casefold() if last_words else ""
            if before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
                continue
            sentences.append(paragraph[start : match.start() + len(match.group(1))].strip())
            start = match.end()
        tail = paragraph[start:].strip()
        if tail:
            sentences.append(tail)
    return [s for s in sentences if s]


def summarize(title: str, text: str) -> str:
    """The lead sentences, about TARGET_WORDS words, never more than MAX_CHARS characters."""
    chosen: list[str] = []
    words = 0
    for sentence in split_sentences(text):
        if sentence.strip().casefold() == title.strip().casefold():
            continue  # the body often repeats the headline as its first line
        chosen.append(sentence)
        words += len(sentence.split())
        if words >= TARGET_WORDS or len(chosen) >= MAX_SENTENCES:
            break
    summary = " ".join(chosen)
    if len(summary) > MAX_CHARS:
        cut = summary[:MAX_CHARS].rsplit(" ", 1)[0]
        summary = cut.rstrip(",;:") + "…"
    return summary
