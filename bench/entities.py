"""Score the enricher's people, organisations and places per language: entity-set F1.

Run by hand: `.venv/bin/python bench/entities.py [--data ../shared/ner-data] [--sentences 2000]`.
Sentences are grouped into documents of 8 (in file order), each document is enriched as an
article body with its language as the page's hint, and per document the set of names found for
a type is compared with the set of gold names (case-folded, punctuation and spaces ignored:
"U. S." is "U.S."). True/false/missed finds are summed over documents; F1 per type and set.

Sets: GermEval 2014 development split (hand-annotated; all of it, and its second half, which is
the half no shipped model was trained on), the WikiANN dev splits for de, nl, en, fr
(silver-standard; no shipped model saw them), and the hand-labelled news sentences in
tests/fixtures/ner/{es,it,pt,pl}.tsv.
"""

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the sys.path line so the script runs from any directory without installing.
from services.enricher.enrich import Enricher
from services.enricher.train import Sentence, germeval_halves, read_germeval, read_wikiann

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "ner"
DOC_SENTENCES = 8
TYPES = {"person": "PER", "organization": "ORG", "place": "LOC"}
_NO_SPACE_BEFORE = frozenset({".", ",", ";", ":", "!", "?", ")", "]", "%"})
_NO_SPACE_AFTER = frozenset({"(", "["})
_KEY_JUNK = re.compile(r"[\W_]+")

# A document: its text, and per label the gold names.
Document = tuple[str, dict[str, set[str]]]


@dataclass
class Score:
    """Summed counts of one type over one set."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fn else 1.0


def key(name: str) -> str:
    """What two spellings of one name share: "U. S." and "U.S.", "Merz" and "Merz'"."""
    return _KEY_JUNK.sub("", name.casefold())


def detokenize(tokens: list[str]) -> tuple[str, list[int]]:
    """Text with plain spacing rules, and each token's start offset in it."""
    text = ""
    starts: list[int] = []
    for i, token in enumerate(tokens):
        if i and token not in _NO_SPACE_BEFORE and tokens[i - 1] not in _NO_SPACE_AFTER:
            text += " "
        starts.append(len(text))
        text += token
    return text, starts


def documents(sentences: list[Sentence]) -> list[Document]:
    """Sentences grouped by 8: the document's text and its gold names per label."""
    docs: list[Document] = []
    for first in range(0, len(sentences), DOC_SENTENCES):
        texts: list[str] = []
        gold: dict[str, set[str]] = {label: set() for label in TYPES.values()}
        for tokens, tags in sentences[first : first + DOC_SENTENCES]:
            text, starts = detokenize(tokens)
            texts.append(text)
            for label, start, end in _spans(tags):
                gold[label].add(text[starts[start] : starts[end - 1] + len(tokens[end - 1])])
        docs.append(("\n".join(texts), gold))
    return docs


def _spans(tags: list[str]) -> list[tuple[str, int, int]]:
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i + 1))
        elif tag.startswith("I-") and spans and spans[-1][2] == i:
            spans[-1] = (spans[-1][0], spans[-1][1], i + 1)
    return spans


def read_labelled(path: Path) -> list[Document]:
    """A hand-labelled fixture: text, people, organisations, places ("; " between names)."""
    rows: list[tuple[str, dict[str, set[str]]]] = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.strip():
            continue
        text, *columns = line.split("\t")
        columns += [""] * (3 - len(columns))
        gold = {
            label: {n.strip() for n in column.split(";") if n.strip()}
            for label, column in zip(TYPES.values(), columns, strict=True)
        }
        rows.append((text, gold))
    docs: list[Document] = []
    for first in range(0, len(rows), DOC_SENTENCES):
        group = rows[first : first + DOC_SENTENCES]
        docs.append((
            "\n".join(text for text, _ in group),
            {label: set().union(*(g[label] for _, g in group)) for label in TYPES.values()},
        ))
    return docs


def score(enricher: Enricher, docs: list[Document], language: str) -> dict[str, Score]:
    scores = {label: Score() for label in TYPES.values()}
    for text, gold in docs:
        result = enricher.enrich("", text, language_hint=language)
        for kind, label in TYPES.items():
            found = {key(e.name) for e in result.entities if e.type == kind} - {""}
            wanted = {key(n) for n in gold[label]} - {""}
            scores[label].tp += len(found & wanted)
            scores[label].fp += len(found - wanted)
            scores[label].fn += len(wanted - found)
    return scores


def sets(data: Path, limit: int) -> list[tuple[str, str, list[Document]]]:
    """(name, language, documents) for every set that is present."""
    found: list[tuple[str, str, list[Document]]] = []
    germeval = data / "germeval2014" / "NER-de-dev.tsv.gz"
    if germeval.exists():
        found.append(("German (GermEval, all)", "de", documents(read_germeval(germeval))))
        found.append(("German (GermEval, 2nd half)", "de", documents(germeval_halves(data)[1])))
    names = {"de": "German", "nl": "Dutch", "en": "English", "fr": "French"}
    for language, name in names.items():
        path = data / "wikiann" / f"{language}-dev.gz"
        if path.exists():
            found.append(
                (f"{name} (WikiANN)", language, documents(read_wikiann(path)[:limit]))
            )
    for language, name in {"es": "Spanish", "it": "Italian", "pt": "Portuguese",
                           "pl": "Polish"}.items():
        path = FIXTURES / f"{language}.tsv"
        if path.exists():
            found.append((f"{name} (labelled)", language, read_labelled(path)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "ner-data")
    parser.add_argument("--sentences", type=int, default=2000,
                        help="WikiANN dev sentences per language (the first N)")
    parser.add_argument("--only", default="", help="comma-separated languages to score")
    args = parser.parse_args()
    enricher = Enricher()
    only = set(filter(None, args.only.split(",")))
    print(f"{'set':<30}{'docs':>6}{'people':>8}{'orgs':>8}{'places':>8}{'s':>6}")
    for name, language, docs in sets(args.data, args.sentences):
        if only and language not in only:
            continue
        started = time.perf_counter()
        scores = score(enricher, docs, language)
        print(f"{name:<30}{len(docs):>6}{scores['PER'].f1:>8.2f}{scores['ORG'].f1:>8.2f}"
              f"{scores['LOC'].f1:>8.2f}{time.perf_counter() - started:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
