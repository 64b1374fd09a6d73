"""Benchmark the search store: indexing rate with one and two writers, index size, and query
latency (1–3 words, a language and a date filter, facets) on a fresh PostgreSQL.

Run by hand: `.venv/bin/python bench/search.py [--n 100000] [--queries 500]`. Targets at 100,000
articles of ~600 words: >= 1,000 docs/s with two writers, p95 <= 50 ms for searches with facets.

The first fifth of the articles is written by one writer, the rest by two concurrent writers
(each an indexer replica's upsert on its own connection, `--batch` articles a transaction, as
the indexer does with a backlog). Articles are generated between timed chunks, so the rates
are the store's, not the generator's. The server is the tests' throwaway cluster (fsync off).
"""

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the sys.path line so the script runs from any directory without installing.
import asyncpg

from shared import store
from shared.messages import ArticleEnriched, Entity
from tests.servers import PostgresServer

TARGET_DOCS_PER_S = 1000.0
TARGET_P95_MS = 50.0
LANGUAGES = ["en"] * 5 + ["de"] * 2 + ["fr"] * 2 + ["es", "it", "xx"]
START = datetime(2023, 1, 1, tzinfo=UTC)
SPAN_DAYS = 730
CHUNK = 2000


class Generator:
    """Articles with a Zipf vocabulary of pseudo-words, entities, countries, dates, duplicates."""

    def __init__(self, seed: int, words: int) -> None:
        self.rng = random.Random(seed)
        syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
        vocabulary: set[str] = set()
        while len(vocabulary) < 30_000:
            vocabulary.add("".join(self.rng.choices(syllables, k=self.rng.randint(2, 4))))
        self.vocabulary = sorted(vocabulary)
        self.rng.shuffle(self.vocabulary)
        self.cum_weights = list(accumulate(1.0 / rank for rank in range(1, 30_001)))
        self.words = words
        names = [w.capitalize() for w in self.vocabulary[5000:6500]]
        self.persons = [f"{names[i]} {names[i + 1]}" for i in range(0, 1000, 2)]
        self.organizations = [f"{n} Group" for n in names[1000:1200]]
        self.places = {n: f"{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}"
                       for i, n in enumerate(names[1200:1500])}

    def text(self, k: int) -> str:
        return " ".join(self.rng.choices(self.vocabulary, cum_weights=self.cum_weights, k=k))

    def article(self, n: int) -> ArticleEnriched:
        rng = self.rng
        persons = rng.sample(self.persons, rng.randint(0, 4))
        organizations = rng.sample(self.organizations, rng.randint(0, 3))
        places = rng.sample(list(self.places), rng.randint(0, 3))
        body = self.text(self.words)
        return ArticleEnriched(
            id=f"b{n:07d}", url=f"https://site{n % 40}.example.com/{n}",
            title=self.text(8).capitalize(), description=self.text(25),
            text=" ".join([*persons, *organizations, *places, body]),
            language=rng.choice(LANGUAGES),
            published=START + timedelta(seconds=rng.randrange(SPAN_DAYS * 86400)),
            entities=[Entity(name=p, type="person") for p in persons]
            + [Entity(name=o, type="organization") for o in organizations]
            + [Entity(name=p, type="place", country=self.places[p]) for p in places],
            countries=sorted({self.places[p] for p in places}),
            duplicate_of=f"b{rng.randrange(n):07d}" if n and rng.random() < 0.02 else None,
        )

    def query(self) -> store.SearchQuery:
        rng = self.rng
        # Words an analyst would type: neither stop-word common nor unique (ranks 100–5,000).
        words = rng.sample(self.vocabulary[100:5000], rng.randint(1, 3))
        since = (START + timedelta(days=rng.randrange(SPAN_DAYS - 90))).date()
        return store.SearchQuery(q=" ".join(words), language=rng.choice(LANGUAGES[:9]),
                                 since=since, until=since + timedelta(days=90), facets=True)


async def index(pool: asyncpg.Pool, gen: Generator, first: int, count: int, writers: int,
                batch: int) -> float:
    """Write articles first..first+count with concurrent writers; the seconds spent writing."""
    spent = 0.0
    for chunk_start in range(first, first + count, CHUNK):
        chunk = [gen.article(n) for n in range(chunk_start, min(chunk_start + CHUNK,
                                                                first + count))]
        shares = [chunk[w::writers] for w in range(writers)]

        async def write(share: list[ArticleEnriched]) -> None:
            for i in range(0, len(share), batch):
                await store.upsert_articles(pool, share[i:i + batch])

        started = time.perf_counter()
        await asyncio.gather(*(write(share) for share in shares))
        spent += time.perf_counter() - started
        done = chunk_start + len(chunk)
        print(f"  indexed {done:>7} ({writers} writer{'s' * (writers > 1)})", file=sys.stderr,
              flush=True)
    return spent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> int:
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-bench-pg-")))
    server.start()
    try:
        pool = await store.connect(server.url, min_size=2, max_size=4)
        gen = Generator(args.seed, args.words)
        one = args.n // 5
        t1 = await index(pool, gen, 0, one, 1, args.batch)
        t2 = await index(pool, gen, one, args.n - one, 2, args.batch)
        async with pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE articles")
            table = await conn.fetchval("SELECT pg_total_relation_size('articles')")
            indexes = await conn.fetchval("SELECT pg_indexes_size('articles')")
            gin = await conn.fetchval("SELECT pg_relation_size('articles_document')")
            count = await conn.fetchval("SELECT count(*) FROM articles")

        timings: dict[str, list[float]] = {"facets": [], "plain": []}
        totals: list[int] = []
        for i in range(args.queries + 20):
            query = gen.query()
            for kind, facets in (("facets", True), ("plain", False)):
                started = time.perf_counter()
                results = await store.search(pool, query.model_copy(update={"facets": facets}))
                if i >= 20:  # the first ones warm the caches
                    timings[kind].append((time.perf_counter() - started) * 1000)
            if i >= 20:
                totals.append(results.total_articles)
        await pool.close()
    finally:
        server.stop()

    rate1, rate2 = one / t1, (args.n - one) / t2
    print(f"search store benchmark: {count} articles of ~{args.words} words, batch {args.batch}, "
          f"{args.queries} queries, {date.today()}")
    print(f"indexing, 1 writer : {rate1:7.0f} docs/s ({one} docs)")
    print(f"indexing, 2 writers: {rate2:7.0f} docs/s ({args.n - one} docs)  "
          f"target >= {TARGET_DOCS_PER_S:.0f}")
    print(f"size: table+indexes {table / 2**20:.0f} MB, indexes {indexes / 2**20:.0f} MB "
          f"(full-text GIN {gin / 2**20:.0f} MB)")
    print(f"matches per query (language + 90-day filter): median "
          f"{statistics.median(totals):.0f}, p95 {percentile(totals, 95):.0f}")
    for kind, values in timings.items():
        label = "with facets" if kind == "facets" else "no facets  "
        print(f"query {label}: p50 {percentile(values, 50):5.1f} ms  "
              f"p95 {percentile(values, 95):5.1f} ms  p99 {percentile(values, 99):5.1f} ms")
    ok = rate2 >= TARGET_DOCS_PER_S and percentile(timings["facets"], 95) <= TARGET_P95_MS
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="articles to index")
    parser.add_argument("--words", type=int, default=600, help="words per article")
    parser.add_argument("--queries", type=int, default=500, help="timed queries")
    parser.add_argument("--batch", type=int, default=100,
                        help="articles per upsert transaction (the indexer takes up to "
                        "NEWSFLOW_INDEX_BATCH, 100, from its backlog)")
    parser.add_argument("--seed", type=int, default=7)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
