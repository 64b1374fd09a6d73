"""Near-duplicate articles: a MinHash LSH index in Redis, shared by every enricher replica.

Keys (all expire), under shared/keys.py's DUPLICATES_PREFIX, `newsflow:duplicates:v1:`:
- `seq`: a counter, the order in which articles were first seen.
- `article:<id>`: the article's first-seen number, signature and the id of the article it
  duplicates (if any); expires `window_s` after its last write.
- `bands:<bucket>`: one hash per time bucket (a day by default), band key -> the first article
  seen with it in that bucket. HSETNX keeps the first writer, so a band holds one id whatever
  the traffic; the hash expires `window_s` after its bucket ends.
"""

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared import keys

from . import minhash
from .minhash import Signature

# A body whose estimated Jaccard similarity (5-word shingles) with an earlier one reaches this is
# its near-duplicate. Republished copies with a new headline and a few edited sentences score
# ~0.6; different stories on the same topic ~0.0. (Candidate for shared/settings.py.)
DUPLICATE_THRESHOLD = 0.45
# How long an article can be found as the original of later copies. (Candidate for settings.)
DUPLICATE_WINDOW_S = 7 * 24 * 3600
# The band hashes are kept per bucket of this length, and dropped whole when they expire.
BUCKET_S = 24 * 3600
# Candidates checked against their full signature, those sharing the most bands first.
MAX_CANDIDATES = 20

KEY_PREFIX = f"{keys.DUPLICATES_PREFIX}v{minhash.SIGNATURE_VERSION}"
SEQ_KEY = f"{KEY_PREFIX}:seq"


def article_key(article_id: str) -> str:
    return f"{KEY_PREFIX}:article:{article_id}"


def bands_key(bucket: int) -> str:
    return f"{KEY_PREFIX}:bands:{bucket}"


@dataclass(frozen=True)
class _Record:
    """What the index keeps per article."""

    seq: int
    signature: Signature
    duplicate_of: str

    def to_bytes(self) -> bytes:
        return self.seq.to_bytes(8, "big") + minhash.to_bytes(self.signature) + (
            self.duplicate_of.encode()
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> "_Record | None":
        size = minhash.NUM_PERM * 4
        if data is None or len(data) < 8 + size:
            return None
        signature = minhash.from_bytes(data[8 : 8 + size])
        if signature is None:
            return None
        return cls(int.from_bytes(data[:8], "big"), signature, data[8 + size :].decode())


class DuplicateIndex:
    """Finds the earlier article an article's body nearly repeats, and remembers this one."""

    def __init__(
        self,
        client: "aioredis.Redis",
        *,
        threshold: float = DUPLICATE_THRESHOLD,
        window_s: int = DUPLICATE_WINDOW_S,
        bucket_s: int = BUCKET_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_s < 1 or bucket_s < 1:
            raise ValueError("window_s and bucket_s must be at least one second")
        self.client = client
        self.threshold = threshold
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.clock = clock

    async def link(self, article_id: str, signature: Signature | None) -> str | None:
        """Record the article; return the id of the earliest article (within the window) whose
        body it nearly repeats, or None. The same id processed again keeps its place in line, so
        it is never its own duplicate nor, later, a duplicate of its own copies."""
        if signature is None:
            return None
        key = article_key(article_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.incr(SEQ_KEY)
            stored, fresh_seq = await pipe.execute()
        previous = _Record.from_bytes(stored)
        seq = previous.seq if previous else int(fresh_seq)
        record = _Record(seq, signature, previous.duplicate_of if previous else "")

        now = self.clock()
        bucket = int(now // self.bucket_s)
        oldest = math.floor((now - self.window_s) / self.bucket_s)
        bands = minhash.band_keys(signature)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(key, record.to_bytes(), ex=self.window_s)
            for band in bands:
                pipe.hsetnx(bands_key(bucket), band, article_id)
            pipe.expireat(bands_key(bucket), (bucket + 1) * self.bucket_s + self.window_s)
            for earlier in range(oldest, bucket + 1):
                pipe.hmget(bands_key(earlier), bands)
            replies: list[Any] = await pipe.execute()
        shared = Counter(
            found.decode()
            for reply in replies[len(bands) + 2 :]
            for found in reply
            if found is not None and found.decode() != article_id
        )
        if not shared:
            return await self._keep(key, record, "")
        candidates = [found for found, _ in shared.most_common(MAX_CANDIDATES)]
        stored_candidates: list[Any] = await self.client.mget(
            [article_key(c) for c in candidates]
        )
        original: tuple[int, str] | None = None
        for candidate, data in zip(candidates, stored_candidates, strict=True):
            other = _Record.from_bytes(data)
            if (
                other is not None
                and other.seq < seq
                and minhash.similarity(signature, other.signature) >= self.threshold
                and (original is None or other.seq < original[0])
            ):
                # Point at the story's first copy, so every copy links to the same article.
                original = (other.seq, other.duplicate_of or candidate)
        duplicate_of = original[1] if original and original[1] != article_id else ""
        return await self._keep(key, record, duplicate_of)

    async def _keep(self, key: str, record: _Record, duplicate_of: str) -> str | None:
        if duplicate_of != record.duplicate_of:
            updated = _Record(record.seq, record.signature, duplicate_of)
            await self.client.set(key, updated.to_bytes(), keepttl=True)
        return duplicate_of or None
