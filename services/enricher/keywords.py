"""Pick an article's keywords by term frequency weighted by where the terms appear."""

import importlib
import re
from collections import Counter, defaultdict
from functools import cache

# Why not a library: YAKE's licence metadata contradicts itself (LGPL vs GPL) and RAKE/sumy need
# NLTK data that cannot be installed here. News puts its subject in the title and the lead, so
# frequency with a position weight is a strong, explainable baseline.
TITLE_WEIGHT = 3.0
LEAD_WEIGHT = 1.5
LEAD_SHARE = 0.2
# A two-word phrase must recur to be a keyword; then it outranks its words a little.
PHRASE_MIN_COUNT = 2
PHRASE_BONUS = 1.5
MIN_WORD_LEN = 3

# Words frequent in any news story that say nothing about this one.
NEWS_STOP_WORDS = frozenset(
    {
        "new", "said", "says", "told", "year", "years", "month", "months", "week", "weeks",
        "day", "days", "time", "today", "yesterday", "tomorrow", "also", "including",
        "according", "like", "just", "many", "much", "last", "first", "second", "third",
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "percent", "per", "cent", "people", "way", "mr", "mrs", "ms"
    }
)

_TOKEN = re.compile(r"[^\W\d_][\w'’-]*[^\W_]|[^\W\d_]|[.,;:!?()\"“”]")
_ELISION = re.compile(r"^(?:[cdjlmnst]|qu)['’](?=\w)", re.IGNORECASE)
_BREAK = frozenset(".,;:!?()\"“”")


@cache
def stop_words(language: str) -> frozenset[str]:
    """spaCy's stop list for the language (it ships ~70), or the English one as a fallback."""
    for lang in (language, "en"):
        try:
            module = importlib.import_module(f"spacy.lang.{lang}.stop_words")
        except ImportError:
            continue
        return frozenset(w.casefold() for w in module.STOP_WORDS) | NEWS_STOP_WORDS
    return frozenset()


def extract_keywords(title: str, text: str, language: str, limit: int = 10) -> list[str]:
    """Up to `limit` keywords and two-word phrases, best first, in their most common spelling."""
    stops = stop_words(language)
    scores: defaultdict[str, float] = defaultdict(float)
    phrase_counts: Counter[str] = Counter()
    spelling: dict[str, Counter[str]] = {}
    lead_end = max(len(text) * LEAD_SHARE, 500)

    def tally(chunk: str, weight_of: float | None) -> None:
        previous: str | None = None
        for match in _TOKEN.finditer(chunk):
            token = match.group()
            weight = weight_of if weight_of is not None else (
                LEAD_WEIGHT if match.start() < lead_end else 1.0
            )
            if token in _BREAK:
                previous = None
                continue
            # French/Italian elision: "l'Europe" is the word "europe".
            token = _ELISION.sub("", token)
            key = token.casefold().replace("’", "'")
            if key in stops or len(key) < MIN_WORD_LEN or key.endswith("'s"):
                previous = None
                continue
            scores[key] += weight
            spelling.setdefault(key, Counter())[token] += 1
            if previous:
                phrase = f"{previous} {key}"
                phrase_counts[phrase] += 1
                scores[phrase] += weight * PHRASE_BONUS
            previous = key

    tally(title, TITLE_WEIGHT)
    tally(text, None)
    _fold_plurals(scores, spelling)
    ranked = [
        term for term in sorted(scores, key=lambda t: -scores[t])
        if " " not in term or phrase_counts[term] >= PHRASE_MIN_COUNT
    ]
    return [_spell(term, spelling) for term in ranked[:limit]]


def _fold_plurals(scores: defaultdict[str, float], spelling: dict[str, Counter[str]]) -> None:
    """"agreements" counts for "agreement" when both occur."""
    for word in [w for w in scores if " " not in w and w.endswith("s")]:
        singular = word[:-1]
        if singular in scores:
            scores[singular] += scores.pop(word)
            spelling[singular].update(spelling.pop(word, Counter()))


def _spell(term: str, spelling: dict[str, Counter[str]]) -> str:
    """Names keep their capital ("Tajikistan"); ordinary words are lower-cased."""
    words = []
    for word in term.split(" "):
        common = spelling[word].most_common(1)[0][0] if word in spelling else word
        words.append(common if common[:1].isupper() and common.lower() != common and
                     spelling[word][common.lower()] == 0 else word)
    return " ".join(words)
