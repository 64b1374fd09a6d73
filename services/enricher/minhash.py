"""MinHash signatures of article bodies and their LSH band keys (pure functions, no Redis).

The signature is a contract between replicas and across restarts (signatures are stored in Redis
and compared later), so it is defined here rather than by a library whose algorithm may change
between releases: word shingles of the normalised text, hashed with BLAKE2b (stable across
processes, unlike `hash()`), then NUM_PERM multiply-shift hash functions with fixed seeds.
Changing any constant below changes every signature: bump SIGNATURE_VERSION with it.
"""

import hashlib
import re
import unicodedata

import numpy as np
import numpy.typing as npt

SIGNATURE_VERSION = 1
# Word k-grams: 5 words are specific enough that two different stories on the same topic share
# almost none, and short enough that an edited sentence spoils only its own shingles.
SHINGLE_WORDS = 5
NUM_PERM = 120
# LSH: 40 bands of 3 rows. Two bodies with Jaccard similarity J share at least one band with
# probability 1 - (1 - J**3)**40: 0.98 at J = 0.45, 0.28 at 0.2, 0.005 at 0.05; candidates are
# then checked against the whole signature.
BANDS = 40
ROWS = NUM_PERM // BANDS
# A body shorter than this (a teaser, a paywall notice, a photo caption) is not fingerprinted:
# short texts share boilerplate more than stories.
MIN_WORDS = 40
# Only the beginning of a very long "article" (a parsing accident) is worth hashing.
MAX_CHARS = 100_000

Signature = npt.NDArray[np.uint32]

_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)
# Multiply-shift hashing ((a*x + b) mod 2**64) >> 32, with a odd: fixed seeds, never change them
# without bumping SIGNATURE_VERSION.
_rng = np.random.Generator(np.random.PCG64(20240517))
_A = _rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
del _rng


def words(text: str) -> list[str]:
    """The text as comparable words: Unicode-normalised, case-folded, without punctuation."""
    return _WORD.findall(unicodedata.normalize("NFKC", text[:MAX_CHARS]).casefold())


def shingles(tokens: list[str], size: int = SHINGLE_WORDS) -> set[str]:
    """Every run of `size` consecutive words (the whole text when it is shorter)."""
    if len(tokens) <= size:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def signature(text: str) -> Signature | None:
    """The MinHash signature of a body, or None when it is too short to tell stories apart."""
    tokens = words(text)
    if len(tokens) < MIN_WORDS:
        return None
    hashes = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little")
            for s in shingles(tokens)
        ),
        dtype=np.uint64,
    )
    # (n shingles x NUM_PERM) products wrap modulo 2**64 by design; the top 32 bits are the hash.
    permuted = (hashes[:, None] * _A[None, :] + _B[None, :]) >> np.uint64(32)
    minimum: Signature = (permuted & _MASK32).min(axis=0).astype(np.uint32)
    return minimum


def similarity(a: Signature, b: Signature) -> float:
    """The estimated Jaccard similarity of the two bodies' shingle sets."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


def band_keys(sig: Signature) -> list[bytes]:
    """One short key per band: bodies that share a key are candidates for a duplicate."""
    return [
        bytes([band]) + hashlib.blake2b(sig[band * ROWS : (band + 1) * ROWS].tobytes(),
                                        digest_size=8).digest()
        for band in range(BANDS)
    ]


def to_bytes(sig: Signature) -> bytes:
    """The signature as stored (little-endian uint32s)."""
    return sig.astype("<u4").tobytes()


def from_bytes(data: bytes) -> Signature | None:
    """A stored signature, or None when it is not one of this version's."""
    if len(data) != NUM_PERM * 4:
        return None
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
