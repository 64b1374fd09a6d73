"""Enrich an article's text: language, entities, countries, keywords and a lead summary."""

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from shared.messages import Entity

from .entities import Extraction, extract_by_gazetteer, extract_with_ner
from .gazetteer import Gazetteer
from .keywords import extract_keywords
from .language import UNDETERMINED, LanguageDetector
from .model import load_french_ner, load_multilingual_ner, load_ner
from .summary import summarize

logger = logging.getLogger(__name__)

# A country is what the article is about when it is named this often (places + demonyms)...
MIN_COUNTRY_MENTIONS = 2
# ...or named in the title; a single passing mention ("including the US and Japan") is not.
KEYWORD_LIMIT = 10
# spaCy's default max_length is 1,000,000 characters; a longer "article" is a parsing accident,
# and only its beginning is worth the CPU.
MAX_NER_CHARS = 100_000
# Attribution lines ("Sources: Asia-Plus (Dushanbe), Eurasianet (New York)", "Picture: …") name
# the agencies and photographers behind the story and where they sit, not what it is about.
# Languages read by the multilingual pipeline trained in this repo (services/enricher/train.py);
# English and French keep spaCy's own models, measured better on them (bench/entities.py).
MULTILINGUAL_NER = frozenset({"de", "nl", "es", "it", "pt", "pl"})
_CREDIT_LINE = re.compile(
    r"^\s*(sources?|quellen?|fuentes?|fonti|picture|photos?|images?|pictures?|foto|fotos|bild"
    r"|credits?|crédits?|illustration|copyright)\s*:.*$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Enrichment:
    """What the enricher adds to an article."""

    language: str  # ISO 639-1, or "und" when unsure
    language_confidence: float  # the detector's score for `language` (for "und": its best guess)
    entities: list[Entity]
    countries: list[str]  # ISO 3166 alpha-2, most-mentioned first
    keywords: list[str]
    summary: str


class Enricher:
    """Loads the models once (slow); enrich() is then called per article (CPU-bound, sync).

    The French model is loaded on the first French article (about 2.5 s and 50 MB resident), the
    multilingual one on the first article in one of its languages: a replica that never sees
    such text does not pay for it.
    """

    def __init__(self) -> None:
        started = time.perf_counter()
        self._language = LanguageDetector()
        self._gazetteer = Gazetteer()
        self._nlp: Any = load_ner()
        self._french_nlp: Any = None
        self._multi_nlp: Any = None
        logger.info("enricher models loaded in %.1f s", time.perf_counter() - started)

    def french_nlp(self) -> Any:
        """The French NER pipeline, loaded (and hash-checked) on first use."""
        if self._french_nlp is None:
            started = time.perf_counter()
            self._french_nlp = load_french_ner()
            logger.info("french model loaded in %.1f s", time.perf_counter() - started)
        return self._french_nlp

    def multilingual_nlp(self) -> Any:
        """The multilingual NER pipeline, loaded (and hash-checked) on first use."""
        if self._multi_nlp is None:
            started = time.perf_counter()
            self._multi_nlp = load_multilingual_ner()
            logger.info("multilingual model loaded in %.1f s", time.perf_counter() - started)
        return self._multi_nlp

    def enrich(self, title: str, text: str, language_hint: str | None = None) -> Enrichment:
        """Everything the enricher knows about one article."""
        language = self._language.detect(title, text, language_hint)
        # A model on another language invents people out of capitalised nouns; when the
        # language is unknown but the page says English or French, trust the page.
        ner_language = language.code
        if language.code == UNDETERMINED:
            ner_language = (language_hint or "").lower()[:2]
        body = _CREDIT_LINE.sub("", text).strip()
        full_text = f"{title.strip()}\n\n{body}" if title.strip() else body
        if ner_language in MULTILINGUAL_NER:
            doc = self.multilingual_nlp()(full_text[:MAX_NER_CHARS])
            extraction = extract_with_ner(
                doc, self._gazetteer, english=False, language=ner_language, every_place=True
            )
        elif ner_language == "en":
            extraction = extract_with_ner(self._nlp(full_text[:MAX_NER_CHARS]), self._gazetteer)
        elif ner_language == "fr":
            doc = self.french_nlp()(full_text[:MAX_NER_CHARS])
            extraction = extract_with_ner(doc, self._gazetteer, english=False)
        else:
            extraction = extract_by_gazetteer(full_text, self._gazetteer)
        title_end = len(title.strip())
        return Enrichment(
            language=language.code,
            language_confidence=round(language.confidence, 4),
            entities=extraction.entities,
            countries=_countries_about(extraction, title_end),
            keywords=extract_keywords(title, body, language.code, KEYWORD_LIMIT),
            summary=summarize(title, text),
        )


def _countries_about(extraction: Extraction, title_end: int) -> list[str]:
    """Countries named often enough (or in the title), most-mentioned first, then earliest."""
    mentions = extraction.country_mentions
    ranked = sorted(mentions, key=lambda c: (-mentions[c][0], mentions[c][1]))
    about = [
        c for c in ranked if mentions[c][0] >= MIN_COUNTRY_MENTIONS or mentions[c][1] < title_end
    ]
    if not about and ranked:
        # A short piece may name each country once: keep the ones it names most.
        top = mentions[ranked[0]][0]
        about = [c for c in ranked if mentions[c][0] == top]
    return about
