"""Scores the enricher on a labelled set of news sentences: precision, recall and F1 per type.

The set (tests/fixtures/enricher/entities.jsonl) was written for this test: English sentences plus
some German and French, with the people, organisations and places a reader would mark, and the
countries they point to (named places and demonyms; not places inside organisation names, such as
"Bank of England"). It includes hard cases: capitals standing for governments, demonyms alone,
brands named like towns, people named like places. Gold names may list surface variants as
"Österreich|Österreichs". Matching is exact after case-folding: "Lula da Silva" for "Luiz Inacio
Lula da Silva" counts as one miss and one false find.

Each sentence is enriched as a headline (title, empty body), so every country it names counts.
Print the table with `.venv/bin/python -m tests.unit.test_enrich_eval`.
"""

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.enricher.enrich import Enricher

LABELLED = Path(__file__).parent.parent / "fixtures" / "enricher" / "entities.jsonl"
TYPES = ("person", "organization", "place", "countries")
# Floors: what was measured, less 0.05 (F1). French text goes through the French model, German
# text through the multilingual model trained in this repo (before it, German had no people or
# organisations: de+fr person 0.67, organization 0.48). The last 16 rows (6 de, 6 fr, 4 en)
# were written as a held-out check before the German and French rules were run on them. Their
# first run, before the fix it prompted ("L'ONU"): de+fr
# person 0.71, organization 0.31, place 0.90, countries 1.00; en person 0.80, organization 0.50,
# place 1.00, countries 1.00.
# Measured (F1): en person 0.84, organization 0.78, place 0.98, countries 1.00; de+fr person 0.97,
# organization 0.73, place 0.94, countries 1.00.
FLOORS: dict[tuple[str, str], float] = {
    ("en", "person"): 0.79,
    ("en", "organization"): 0.71,
    ("en", "place"): 0.92,
    ("en", "countries"): 0.95,
    ("de+fr", "person"): 0.92,
    ("de+fr", "organization"): 0.68,
    ("de+fr", "place"): 0.89,
    ("de+fr", "countries"): 0.94,
}


@dataclass(frozen=True)
class Score:
    """Counts of one entity type over a group of sentences."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def labelled() -> list[dict[str, object]]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line]


def group_of(language: str) -> str:
    return "en" if language == "en" else "de+fr"


def match(gold: Iterable[str], found: Iterable[str]) -> tuple[int, int, int]:
    """(true, false, missed) finds; a gold entry "A|B" is matched by either spelling."""
    remaining = Counter(name.casefold() for name in found)
    tp = fn = 0
    for entry in gold:
        spellings = [s.casefold() for s in entry.split("|")]
        hit = next((s for s in spellings if remaining[s] > 0), None)
        if hit is None:
            fn += 1
        else:
            tp += 1
            remaining[hit] -= 1
    return tp, sum(remaining.values()), fn


def evaluate(enricher: Enricher) -> tuple[dict[tuple[str, str], Score], list[str]]:
    """Scores per (language group, type), and one line per sentence with a mistake."""
    totals: dict[tuple[str, str], list[int]] = {}
    mistakes: list[str] = []
    for row in labelled():
        text, language = str(row["text"]), str(row["lang"])
        result = enricher.enrich(text, "", language_hint=language)
        found = {t: [e.name for e in result.entities if e.type == t] for t in TYPES[:3]}
        found["countries"] = list(result.countries)
        for kind in TYPES:
            gold = row[kind]
            assert isinstance(gold, list)
            tp, fp, fn = match(gold, found[kind])
            counts = totals.setdefault((group_of(language), kind), [0, 0, 0])
            counts[0] += tp
            counts[1] += fp
            counts[2] += fn
            if fp or fn:
                mistakes.append(
                    f"{kind:<12} gold {sorted(gold)} found {sorted(found[kind])}: {text}"
                )
    return {key: Score(*counts) for key, counts in totals.items()}, mistakes


def table(scores: dict[tuple[str, str], Score]) -> str:
    lines = [f"{'group':<7}{'type':<14}{'P':>6}{'R':>6}{'F1':>6}{'tp':>5}{'fp':>5}{'fn':>5}"]
    ordered = sorted(scores.items(), key=lambda i: (i[0][0] != "en", TYPES.index(i[0][1])))
    for (group, kind), s in ordered:
        lines.append(f"{group:<7}{kind:<14}{s.precision:>6.2f}{s.recall:>6.2f}{s.f1:>6.2f}"
                     f"{s.tp:>5}{s.fp:>5}{s.fn:>5}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def scores() -> dict[tuple[str, str], Score]:
    return evaluate(Enricher())[0]


def test_the_set_is_big_enough() -> None:
    rows = labelled()
    assert sum(r["lang"] == "en" for r in rows) >= 40
    assert {r["lang"] for r in rows} >= {"en", "de", "fr"}


@pytest.mark.parametrize(("group", "kind"), sorted(FLOORS))
def test_scores_stay_above_the_measured_floor(
    scores: dict[tuple[str, str], Score], group: str, kind: str
) -> None:
    assert scores[(group, kind)].f1 >= FLOORS[(group, kind)], table(scores)


if __name__ == "__main__":
    measured, errors = evaluate(Enricher())
    print(table(measured))
    print("\n".join(errors))
