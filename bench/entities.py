"""Score the enricher's people, organisations and places per language: entity-set F1.

Run by hand: `.venv/bin/python bench/entities.py [--data ../shared/ner-data] [--sentences 2000]`.
Sentences are grouped into documents of 8 (in file order), each document is enriched as an
article body with its language as the page's hint, and per document the set of names found for
a type is compared with the set of gold entities (case-folded, punctuation and spaces ignored:
"U. S." is "U.S."). One entity is one entity: gold spellings of one entity in a document are
merged (a lone "Rahmon" with "Emomali Rahmon", "Olafa Scholza" with "Olaf Scholz" where the
fixture lists both), and a second name found for an already found entity is a false find.
True/false/missed finds are summed over documents; F1 per type and set.

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

# A document: its text, and per label the gold entities, each as its spellings.
Document = tuple[str, dict[str, list[set[str]]]]


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
    return " ".join(_KEY_JUNK.sub(" ", name.casefold()).split())


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
        gold: dict[str, list[set[str]]] = {label: [] for label in TYPES.values()}
        for tokens, tags in sentences[first : first + DOC_SENTENCES]:
            text, starts = detokenize(tokens)
            texts.append(text)
            for label, start, end in _spans(tags):
                name = text[starts[start] : starts[end - 1] + len(tokens[end - 1])]
                gold[label].append({key(name)} - {""})
        docs.append(("\n".join(texts), merged(gold)))
    return docs


def merged(gold: dict[str, list[set[str]]]) -> dict[str, list[set[str]]]:
    """Each label's entities with shared spellings joined; a lone given or family name joins the
    only full name of the document it starts or ends (people only)."""
    result: dict[str, list[set[str]]] = {}
    for label, entities in gold.items():
        groups: list[set[str]] = []
        for spellings in filter(None, entities):
            touching = [g for g in groups if g & spellings]
            joined = set(spellings).union(*touching)
            groups = [g for g in groups if not g & spellings] + [joined]
        if label == "PER":
            groups = _short_names_joined(groups)
        result[label] = groups
    return result


def _short_names_joined(groups: list[set[str]]) -> list[set[str]]:
    words = [{tuple(w) for w in (_words(s) for s in g)} for g in groups]
    kept: list[set[str]] = []
    for i, group in enumerate(groups):
        single = [w[0] for w in words[i] if len(w) == 1]
        if len(single) == len(group):
            owners = [
                j for j, forms in enumerate(words)
                if j != i and any(len(f) > 1 and (f[0] in single or f[-1] in single)
                                  for f in forms)
            ]
            if len(owners) == 1:
                groups[owners[0]] |= group
                continue
        kept.append(group)
    return [g for g in kept if g]


def _words(spelling: str) -> list[str]:
    return spelling.split(" ")


def _spans(tags: list[str]) -> list[tuple[str, int, int]]:
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], i, i + 1))
        elif tag.startswith("I-") and spans and spans[-1][2] == i:
            spans[-1] = (spans[-1][0], spans[-1][1], i + 1)
    return spans


def read_labelled(path: Path) -> list[Document]:
    """A hand-labelled fixture: text, people, organisations, places ("; " between entities,
    "|" between spellings of one)."""
    rows: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            text, *columns = line.split("\t")
            rows.append((text, columns + [""] * (3 - len(columns))))
    docs: list[Document] = []
    for first in range(0, len(rows), DOC_SENTENCES):
        group = rows[first : first + DOC_SENTENCES]
        gold: dict[str, list[set[str]]] = {label: [] for label in TYPES.values()}
        for _, columns in group:
            for label, column in zip(TYPES.values(), columns, strict=True):
                for entity in filter(str.strip, column.split(";")):
                    gold[label].append({key(s) for s in entity.split("|")} - {""})
        docs.append(("\n".join(text for text, _ in group), merged(gold)))
    return docs


def score(enricher: Enricher, docs: list[Document], language: str) -> dict[str, Score]:
    scores = {label: Score() for label in TYPES.values()}
    for text, gold in docs:
        result = enricher.enrich("", text, language_hint=language)
        for kind, label in TYPES.items():
            found = {key(e.name) for e in result.entities if e.type == kind} - {""}
            add(scores[label], gold[label], found)
    return scores


def add(score: Score, gold: list[set[str]], found: set[str]) -> None:
    """Count one document: a gold entity is found by any of its spellings, once."""
    hit: set[int] = set()
    for name in found:
        owner = next((i for i, spellings in enumerate(gold) if name in spellings), None)
        if owner is None or owner in hit:
            score.fp += 1
        else:
            hit.add(owner)
            score.tp += 1
    score.fn += len(gold) - len(hit)


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
