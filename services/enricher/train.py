"""Train the compact multilingual NER pipeline shipped in services/enricher/data/ner_multi.

Reproducible: `python -m services.enricher.train --data ../shared/ner-data` reads the WikiANN
train splits (de, nl, en, fr; the dev splits and GermEval stay held out for measuring), converts
them to spaCy Docs with the language-neutral `xx` tokenizer, and trains tok2vec + ner (no vectors)
with a fixed seed. `--germeval-half` also trains on the first half of GermEval's development
split (the second half is what bench/entities.py then scores German on).
"""

import argparse
import gzip
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import biluo_tags_to_spans, iob_to_biluo

# The labels every shipped pipeline predicts; GermEval's OTH and its deriv/part variants are
# not entities an analyst filters by, so they are read as O.
LABELS = ("PER", "ORG", "LOC")
DEFAULT_LANGUAGES = ("de", "nl", "en", "fr")
# Sentences per training language: WikiANN's train split has 20,000 each.
DEFAULT_PER_LANGUAGE = 20_000
GERMEVAL_FILE = "germeval2014/NER-de-dev.tsv.gz"
GERMEVAL_REPEAT = 3

Sentence = tuple[list[str], list[str]]  # tokens, IOB tags restricted to LABELS

_CONFIG = """
[paths]
train = null
dev = null

[system]
seed = {seed}
gpu_allocator = null

[nlp]
lang = "xx"
pipeline = ["tok2vec","ner"]
batch_size = 1000
tokenizer = {{"@tokenizers":"spacy.Tokenizer.v1"}}

[components]

[components.tok2vec]
factory = "tok2vec"

[components.tok2vec.model]
@architectures = "spacy.Tok2Vec.v2"

[components.tok2vec.model.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = {width}
attrs = ["NORM","PREFIX","SUFFIX","SHAPE"]
rows = [{rows},2500,5000,500]
include_static_vectors = false

[components.tok2vec.model.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = {width}
depth = {depth}
window_size = 1
maxout_pieces = 3

[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = true
nO = null

[components.ner.model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = {width}
upstream = "tok2vec"

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${{paths.train}}
max_length = 0
gold_preproc = false
limit = 0

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${{paths.dev}}
max_length = 0
gold_preproc = false
limit = 0

[training]
dev_corpus = "corpora.dev"
train_corpus = "corpora.train"
seed = ${{system.seed}}
gpu_allocator = ${{system.gpu_allocator}}
dropout = 0.1
accumulate_gradient = 1
patience = 0
max_epochs = {epochs}
max_steps = {max_steps}
eval_frequency = {eval_frequency}
frozen_components = []
annotating_components = []
before_to_disk = null
before_update = null

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
discard_oversize = false
tolerance = 0.2
get_length = null

[training.batcher.size]
@schedules = "compounding.v1"
start = 100
stop = 1000
compound = 1.001
t = 0.0

[training.logger]
@loggers = "spacy.ConsoleLogger.v1"
progress_bar = false

[training.optimizer]
@optimizers = "Adam.v1"
beta1 = 0.9
beta2 = 0.999
L2_is_weight_decay = true
L2 = 0.01
grad_clip = 1.0
use_averages = true
eps = 0.00000001
learn_rate = 0.001

[training.score_weights]
ents_f = 1.0
ents_p = 0.0
ents_r = 0.0
ents_per_type = null

[pretraining]

[initialize]
vectors = null
init_tok2vec = null
vocab_data = null
lookups = null
before_init = null
after_init = null

[initialize.components]

[initialize.tokenizer]
"""


def _keep(tag: str) -> str:
    """The tag if it is B-/I- of a kept label, else O ("B-LOCderiv", "B-OTH" -> O)."""
    prefix, _, label = tag.partition("-")
    return tag if prefix in ("B", "I") and label in LABELS else "O"


def _repaired(tags: list[str]) -> list[str]:
    """IOB with every I- that does not continue its own label turned into a B-."""
    fixed: list[str] = []
    for i, tag in enumerate(tags):
        continues = i > 0 and fixed[i - 1][2:] == tag[2:]
        fixed.append("B-" + tag[2:] if tag.startswith("I-") and not continues else tag)
    return fixed


def read_wikiann(path: Path) -> list[Sentence]:
    """WikiANN's `lang:token<TAB>tag` lines, a blank line between sentences."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append((tokens, _repaired(tags)))
                tokens, tags = [], []
                continue
            token, _, tag = line.rpartition("\t")
            tokens.append(token.split(":", 1)[1] if ":" in token else token)
            tags.append(_keep(tag))
    if tokens:
        sentences.append((tokens, _repaired(tags)))
    return sentences


def read_germeval(path: Path) -> list[Sentence]:
    """GermEval 2014's outer tags (PER, ORG, LOC; OTH and deriv/part read as O)."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                if tokens:
                    sentences.append((tokens, _repaired(tags)))
                tokens, tags = [], []
                continue
            tokens.append(fields[1])
            tags.append(_keep(fields[2]))
    if tokens:
        sentences.append((tokens, _repaired(tags)))
    return sentences


def germeval_halves(data: Path) -> tuple[list[Sentence], list[Sentence]]:
    """GermEval dev split in two, in file order: (trainable first half, held-out second half)."""
    sentences = read_germeval(data / GERMEVAL_FILE)
    middle = len(sentences) // 2
    return sentences[:middle], sentences[middle:]


def to_doc(nlp: Any, sentence: Sentence) -> Doc:
    """The sentence as a spaCy Doc with its entities set (tokens joined by single spaces)."""
    tokens, tags = sentence
    doc = Doc(nlp.vocab, words=tokens, spaces=[True] * len(tokens))
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(tags))
    return doc


def _joined(sentences: list[Sentence], rng: random.Random) -> Iterator[Sentence]:
    """Sentences grouped 1-4 at a time: WikiANN's fragments are shorter than news sentences."""
    i = 0
    while i < len(sentences):
        size = rng.randint(1, 4)
        group = sentences[i : i + size]
        yield [t for s in group for t in s[0]], [t for s in group for t in s[1]]
        i += size


def corpus(
    data: Path, languages: tuple[str, ...], per_language: int, germeval_half: bool, seed: int
) -> tuple[list[Sentence], list[Sentence]]:
    """(train, dev) sentences; dev is a small slice of each train split, for spaCy's logger."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible shuffle, not a secret
    train: list[Sentence] = []
    dev: list[Sentence] = []
    for language in languages:
        sentences = read_wikiann(data / "wikiann" / f"{language}-train.gz")[:per_language]
        dev += sentences[-200:]
        train += list(_joined(sentences[:-200], rng))
    if germeval_half:
        # Hand-annotated news sentences, a small set beside 80,000 silver fragments: repeated
        # so that they weigh (the held-out second half is never read here).
        first, _ = germeval_halves(data)
        train += first * GERMEVAL_REPEAT
    rng.shuffle(train)
    return train, dev


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/ner-data"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "ner_multi")
    parser.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES))
    parser.add_argument("--per-language", type=int, default=DEFAULT_PER_LANGUAGE)
    parser.add_argument("--germeval-half", action="store_true")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", choices=("best", "last"), default="best",
                        help="the checkpoint with the best dev score, or the last one")
    args = parser.parse_args(argv)

    from spacy.cli.train import train

    nlp = spacy.blank("xx")
    train_set, dev_set = corpus(
        args.data, tuple(args.languages.split(",")), args.per_language, args.germeval_half,
        args.seed,
    )
    sys.stdout.write(f"training on {len(train_set)} docs, {len(dev_set)} dev sentences\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, sentences in (("train", train_set), ("dev", dev_set)):
            DocBin(docs=(to_doc(nlp, s) for s in sentences)).to_disk(work / f"{name}.spacy")
        config = work / "config.cfg"
        config.write_text(
            _CONFIG.format(
                seed=args.seed, width=args.width, depth=args.depth, rows=args.rows,
                epochs=args.epochs, max_steps=args.max_steps,
                eval_frequency=max(200, len(train_set) // 100),
            ),
            encoding="utf-8",
        )
        train(
            config, work / "output",
            overrides={"paths.train": str(work / "train.spacy"),
                       "paths.dev": str(work / "dev.spacy")},
        )
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(work / "output" / f"model-{args.keep}", args.out)
    sys.stdout.write(f"saved to {args.out}\n")


if __name__ == "__main__":
    main()
