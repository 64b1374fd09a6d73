"""Unit tests of the MinHash signature: normalisation, stability across processes, similarity."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from services.enricher import minhash

FIXTURES = Path(__file__).parent.parent / "fixtures"


def body(path: Path) -> str:
    """An article file's body: everything after its first line (the headline)."""
    return path.read_text(encoding="utf-8").split("\n", 1)[1].split("\nRelated articles")[0]


ORIGINAL = body(FIXTURES / "article.txt")
REPUBLISHED = body(FIXTURES / "enricher" / "republished.txt")
SAME_TOPIC = body(FIXTURES / "enricher" / "same_topic.txt")
# The first values of the reference article's signature, recorded with SIGNATURE_VERSION 1.
GOLDEN_PREFIX = [462469, 1122460, 8351931, 7993612, 10350475, 4619792]


def jaccard(a: str, b: str) -> float:
    sa, sb = minhash.shingles(minhash.words(a)), minhash.shingles(minhash.words(b))
    return len(sa & sb) / len(sa | sb)


def test_words_ignore_case_punctuation_and_unicode_forms() -> None:
    assert minhash.words("Iran’s  FIRST\u00a0ambassador, (to) Tajikistan!") == [
        "iran", "s", "first", "ambassador", "to", "tajikistan",
    ]
    assert minhash.words("ﬁnance Ｔehran") == ["finance", "tehran"]  # NFKC: ligature, full width


def test_shingles_are_runs_of_five_words() -> None:
    tokens = ["a", "b", "c", "d", "e", "f", "g"]
    assert minhash.shingles(tokens) == {"a b c d e", "b c d e f", "c d e f g"}
    assert minhash.shingles(["a", "b"]) == {"a b"}
    assert minhash.shingles([]) == set()


def test_short_bodies_get_no_signature() -> None:
    assert minhash.signature("Subscribe to read the full story. " * 3) is None
    assert minhash.signature("") is None


def test_signature_ignores_layout_case_and_punctuation() -> None:
    relaid = ORIGINAL.upper().replace("\n\n", "\n").replace(",", " ;")
    a, b = minhash.signature(ORIGINAL), minhash.signature(relaid)
    assert a is not None and b is not None
    assert np.array_equal(a, b)


def test_signature_is_the_same_in_another_process() -> None:
    # Replicas compare signatures through Redis: they must not depend on the process (hash seeds).
    code = (
        "import sys; from services.enricher import minhash; "
        "print(minhash.to_bytes(minhash.signature(sys.stdin.read())).hex())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], input=ORIGINAL, capture_output=True, text=True, check=True,
        cwd=Path(__file__).parents[2], env={"PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    here = minhash.signature(ORIGINAL)
    assert here is not None
    assert other == minhash.to_bytes(here).hex()


def test_signature_is_as_recorded() -> None:
    # Stored signatures are compared with new ones: a change here needs SIGNATURE_VERSION bumped.
    sig = minhash.signature(ORIGINAL)
    assert sig is not None
    assert sig.dtype == np.uint32 and sig.shape == (minhash.NUM_PERM,)
    assert minhash.SIGNATURE_VERSION == 1
    assert [int(v) for v in sig[:6]] == GOLDEN_PREFIX


def test_republished_copy_is_similar_and_same_topic_story_is_not() -> None:
    original, republished, same_topic = (
        minhash.signature(t) for t in (ORIGINAL, REPUBLISHED, SAME_TOPIC)
    )
    assert original is not None and republished is not None and same_topic is not None
    exact = jaccard(ORIGINAL, REPUBLISHED)
    assert 0.5 < exact < 0.8  # a few sentences really were edited
    assert abs(minhash.similarity(original, republished) - exact) < 0.12
    assert minhash.similarity(original, same_topic) < 0.1
    assert minhash.similarity(original, original) == 1.0


def test_band_keys_are_short_and_shared_by_equal_bands() -> None:
    sig = minhash.signature(ORIGINAL)
    assert sig is not None
    keys = minhash.band_keys(sig)
    assert len(keys) == minhash.BANDS == len(set(keys))
    assert all(len(k) == 9 for k in keys)
    changed = sig.copy()
    changed[0] += 1  # only the first band differs
    other = minhash.band_keys(changed)
    assert other[0] != keys[0] and other[1:] == keys[1:]


def test_signature_bytes_round_trip() -> None:
    sig = minhash.signature(ORIGINAL)
    assert sig is not None
    data = minhash.to_bytes(sig)
    assert len(data) == minhash.NUM_PERM * 4
    back = minhash.from_bytes(data)
    assert back is not None and np.array_equal(back, sig)
    assert minhash.from_bytes(data[:-4]) is None
