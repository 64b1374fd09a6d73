"""Benchmark the search store at scale: latency per query shape (p50/p95/p99, with and without
facets), the indexing rate with one and two writers, and table and index sizes.

Run by hand: `nice -n 10 .venv/bin/python bench/search.py [--n 1000000] [--queries 50]`.
Targets (issue #23): p95 <= 150 ms and p99 <= 500 ms for every shape with facets, and >= 1,000
documents/s indexed with two writers.

Loading a million articles through the Python upsert would take hours on two shared cores, so
the bulk is written with COPY (the same rows the upsert writes, `store._row`; the secondary
indexes are dropped during the load and built afterwards). The indexing rate is then measured
separately, through the real upsert path (`store.upsert_articles`, `--batch` articles a
transaction, one and two concurrent writers) on `--index-n` new articles added to the full
table, so its indexes are full size. The server is the tests' throwaway cluster (fsync off).

"server CPU" is the mean CPU time the server process spent per search with facets, read from
/proc: unlike the latencies, it does not grow with the other work on a shared machine.
"""

import argparse
import asyncio
import math
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the sys.path line so the script runs from any directory without installing.
import asyncpg

from shared import store
from shared.messages import ArticleEnriched, Entity
from tests.servers import PostgresServer

TARGET_DOCS_PER_S = 1000.0
TARGET_P95_MS = 150.0
TARGET_P99_MS = 500.0
LANGUAGES = ["en"] * 5 + ["de"] * 2 + ["fr"] * 2 + ["es", "it", "xx"]
START = datetime(2023, 1, 1, tzinfo=UTC)
SPAN_DAYS = 730
VOCABULARY = 30_000
CHUNK = 2000


class Generator:
    """Articles with a Zipf vocabulary of pseudo-words, entities, countries, dates, duplicates."""

    def __init__(self, seed: int, words: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
        vocabulary: set[str] = set()
        while len(vocabulary) < VOCABULARY:
            vocabulary.add("".join(self.rng.choices(syllables, k=self.rng.randint(2, 4))))
        self.vocabulary = sorted(vocabulary)
        self.rng.shuffle(self.vocabulary)
        self.cum_weights = list(accumulate(1.0 / rank for rank in range(1, VOCABULARY + 1)))
        self.words = words
        names = [w.capitalize() for w in self.vocabulary[5000:6500]]
        self.persons = [f"{names[i]} {names[i + 1]}" for i in range(0, 1000, 2)]
        self.organizations = [f"{n} Group" for n in names[1000:1200]]
        self.places = {n: f"{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}"
                       for i, n in enumerate(names[1200:1500])}

    def reseed(self, part: int) -> None:
        """Articles of one part of the load, the same whichever process makes them."""
        self.rng = random.Random(self.seed * 1_000_003 + part)

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

    def rank_matching(self, share: float) -> int:
        """The vocabulary rank of a word found in about `share` of the articles."""
        total = self.cum_weights[-1]
        per_article = self.words + 33  # body, title and description
        for rank in range(1, VOCABULARY + 1):
            if 1 - (1 - 1 / (rank * total)) ** per_article < share:
                return rank - 1
        return VOCABULARY

    def window(self, days: int = 90) -> tuple[date, date]:
        since = (START + timedelta(days=self.rng.randrange(SPAN_DAYS - days))).date()
        return since, since + timedelta(days=days)


def shapes(gen: Generator) -> dict[str, Callable[[], dict[str, Any]]]:
    """The query shapes of issue #23: each makes the parameters of one search."""
    rng = gen.rng
    voc = gen.vocabulary
    half = gen.rank_matching(0.5)

    def mix() -> dict[str, Any]:
        # Words an analyst would type: neither stop-word common nor unique (ranks 100–5,000),
        # a language and a 90-day window.
        since, until = gen.window()
        return {"q": " ".join(rng.sample(voc[100:5000], rng.randint(1, 3))),
                "language": rng.choice(LANGUAGES[:9]), "since": since, "until": until}

    def phrase() -> dict[str, Any]:
        # Two neighbouring words of a generated body: what an article really says.
        words = gen.text(gen.words).split()
        i = rng.randrange(len(words) - 1)
        return {"q": f'"{words[i]} {words[i + 1]}"'}

    def filters_only() -> dict[str, Any]:
        since, until = gen.window()
        return {"country": rng.choice(list(gen.places.values())), "since": since,
                "until": until}

    return {
        "mix": mix,
        "rare word": lambda: {"q": rng.choice(voc[10_000:])},
        "common word (~50 %)": lambda: {"q": voc[rng.randint(max(0, half - 3), half + 3)]},
        "phrase": phrase,
        "filters only": filters_only,
        "sort by date": lambda: {"q": rng.choice(voc[20:200]), "sort": "date"},
        "deep page (1,000+)": lambda: {"q": rng.choice(voc[20:200]), "sort": "date",
                                       "deep": True},
    }


_worker: tuple[Generator, int] | None = None


def _start_worker(seed: int, words: int, n: int) -> None:
    global _worker  # noqa: PLW0603 -- one generator per worker process, made once
    _worker = Generator(seed, words), n


def _rows(first: int) -> list[tuple[Any, ...]]:
    """The rows of articles first..first+CHUNK, exactly as the upsert writes them."""
    if _worker is None:
        raise RuntimeError("the worker was not started")
    gen, n = _worker
    gen.reseed(first)
    return [store._row(gen.article(i)) for i in range(first, min(first + CHUNK, n))]


async def bulk_load(pool: asyncpg.Pool, gen: Generator, n: int) -> float:
    """COPY n articles with the secondary indexes dropped, then build them; the seconds spent."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'articles' "
            "AND indexname <> 'articles_pkey'")
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
    queue: asyncio.Queue[list[tuple[Any, ...]] | None] = asyncio.Queue(maxsize=4)

    loop = asyncio.get_running_loop()

    async def produce() -> None:
        # Two processes generate (Python is the slower half of the load), in order.
        with ProcessPoolExecutor(2, initializer=_start_worker,
                                 initargs=(gen.seed, gen.words, n)) as workers:
            pending: list[asyncio.Future[list[tuple[Any, ...]]]] = []
            for first in range(0, n, CHUNK):
                pending.append(loop.run_in_executor(workers, _rows, first))
                if len(pending) >= 4:
                    await queue.put(await pending.pop(0))
                    print(f"  copied {first:>8}", file=sys.stderr, flush=True)
            for future in pending:
                await queue.put(await future)
        for _ in range(2):
            await queue.put(None)

    async def consume() -> None:
        async with pool.acquire() as conn:
            # Binary COPY needs regconfig as its oid (asyncpg has no binary codec for it).
            oids: dict[str, int] = {r["cfgname"]: r["oid"] for r in await conn.fetch(
                "SELECT cfgname, oid FROM pg_ts_config")}
            await conn.set_type_codec(
                "regconfig", schema="pg_catalog", format="binary",
                encoder=lambda name: struct.pack("!I", oids[name]),
                decoder=lambda data: data)
            while (rows := await queue.get()) is not None:
                await conn.copy_records_to_table("articles", records=rows,
                                                 columns=list(store._COLUMNS))

    await asyncio.gather(produce(), consume(), consume())
    async with pool.acquire() as conn:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        for row in indexes:
            print(f"  building {row['indexname']}", file=sys.stderr, flush=True)
            await conn.execute(row["indexdef"])
        await conn.execute("VACUUM ANALYZE articles")
    return time.perf_counter() - started


async def index_rate(pool: asyncpg.Pool, gen: Generator, first: int, count: int, writers: int,
                     batch: int) -> float:
    """Documents per second through the real upsert path with `writers` concurrent writers."""
    articles = [gen.article(i) for i in range(first, first + count)]
    shares = [articles[w::writers] for w in range(writers)]

    async def write(share: list[ArticleEnriched]) -> None:
        for i in range(0, len(share), batch):
            await store.upsert_articles(pool, share[i:i + batch])

    started = time.perf_counter()
    await asyncio.gather(*(write(share) for share in shares))
    return count / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


CURSORS = "after" in store.SearchQuery.model_fields


def cpu_ms(pid: int) -> float:
    """CPU time a process has used (user + system): what a query costs whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def timed_search(pool: asyncpg.Pool, params: dict[str, Any], facets: bool,
                       backend: int) -> tuple[float, float, Any]:
    """One search as the API makes it: wall ms, the server's CPU ms, the results. A deep page is
    reached by cursor when the store has cursors (the pages before it are not timed), else by
    offset."""
    params = {**params, "facets": facets}
    if params.pop("deep", False):
        if CURSORS:
            after = None
            for _ in range(10):
                page = await store.search(pool, store.SearchQuery.model_validate(
                    {**params, "facets": False, "limit": 100, "after": after}))
                after = page.next
            params["after"] = after
        else:
            params["offset"] = 1000
    query = store.SearchQuery.model_validate(params)
    cpu = cpu_ms(backend)
    started = time.perf_counter()
    results = await store.search(pool, query)
    return (time.perf_counter() - started) * 1000, cpu_ms(backend) - cpu, results


async def sizes(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT pg_relation_size('articles') AS heap, "
            "coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0) AS toast, "
            "pg_indexes_size('articles') AS indexes FROM pg_class WHERE relname = 'articles'")
        each = await conn.fetch(
            "SELECT indexrelname, pg_relation_size(indexrelid) AS size FROM pg_stat_user_indexes "
            "WHERE relname = 'articles' ORDER BY 2 DESC")
    mb = 2**20
    row = rows[0]
    return [f"size: heap {row['heap'] / mb:,.0f} MB, TOAST {row['toast'] / mb:,.0f} MB, "
            f"indexes {row['indexes'] / mb:,.0f} MB",
            "  " + ", ".join(f"{r['indexrelname']} {r['size'] / mb:,.0f}" for r in each)]


async def run(args: argparse.Namespace) -> int:
    folder = args.reuse or Path(tempfile.mkdtemp(prefix="newsflow-bench-pg-", dir=args.tmp))
    server = PostgresServer(folder)
    server.start()
    try:
        pool = await store.connect(server.url, min_size=2, max_size=4)
        gen = Generator(args.seed, args.words)
        load_s = 0.0
        if args.reuse:  # loaded by an earlier run (--keep): new articles get new ids
            async with pool.acquire() as conn:
                first = await conn.fetchval("SELECT count(*) FROM articles")
        else:
            load_s = await bulk_load(pool, gen, args.n)
            first = args.n
            print(f"  loaded into {folder}", file=sys.stderr, flush=True)
        if args.load_only:
            await pool.close()
            return 0
        rate1 = await index_rate(pool, gen, first, args.index_n, 1, args.batch)
        rate2 = await index_rate(pool, gen, first + args.index_n, args.index_n, 2, args.batch)
        async with pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE articles")
            count = await conn.fetchval("SELECT count(*) FROM articles")
        size_lines = await sizes(pool)

        await pool.close()
        # One connection, so that its server process's CPU time is the searches'.
        pool = await store.connect(server.url, min_size=1, max_size=1)
        backend = await pool.fetchval("SELECT pg_backend_pid()")
        timings: dict[str, dict[bool, list[float]]] = {}
        cpu: dict[str, float] = {}
        matches: dict[str, list[str]] = {}
        for name, make in shapes(gen).items():
            timings[name] = {True: [], False: []}
            cpu[name] = 0.0
            for i in range(args.queries + args.warmup):
                params = make()
                for facets in (True, False):
                    ms, used, results = await timed_search(pool, params, facets, backend)
                    if i >= args.warmup:  # the first ones warm the caches
                        timings[name][facets].append(ms)
                        cpu[name] += used if facets else 0.0
                if i >= args.warmup:
                    estimate = getattr(results, "total_is_estimate", False)
                    matches.setdefault(name, []).append(
                        results.total_articles * (-1 if estimate else 1))
            print(f"  timed {name}", file=sys.stderr, flush=True)
        await pool.close()
    finally:
        server.stop()
        if not (args.keep or args.reuse or args.load_only):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])  # noqa: ASYNC240 -- at the end
    print(f"search store benchmark: {count:,} articles of ~{args.words} words, {args.queries} "
          f"queries a shape, {date.today()}, load average at the end {load}")
    print(f"bulk load (COPY + index builds): {load_s:,.0f} s")
    print(f"indexing through the upsert, 1 writer : {rate1:6.0f} docs/s ({args.index_n} docs, "
          f"batch {args.batch})")
    print(f"indexing through the upsert, 2 writers: {rate2:6.0f} docs/s  "
          f"target >= {TARGET_DOCS_PER_S:.0f}")
    for line in size_lines:
        print(line)
    print(f"{'shape':<22} {'with facets p50/p95/p99 ms':>28} {'without facets':>22}  "
          f"{'server CPU':>10}  matches")
    ok = rate2 >= TARGET_DOCS_PER_S
    for name, by in timings.items():
        cells = []
        for facets in (True, False):
            v = by[facets]
            cells.append(f"{percentile(v, 50):7.1f} {percentile(v, 95):7.1f} "
                         f"{percentile(v, 99):7.1f}")
        ok = ok and percentile(by[True], 95) <= TARGET_P95_MS
        ok = ok and percentile(by[True], 99) <= TARGET_P99_MS
        found = sorted(abs(int(m)) for m in matches[name])
        estimated = sum(1 for m in matches[name] if int(m) < 0)
        print(f"{name:<22} {cells[0]:>28} {cells[1]:>22}  {cpu[name] / args.queries:7.1f} ms"
              f"  median {statistics.median(found):,.0f}"
              + (f" ({estimated} estimated)" if estimated else ""))
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="articles to load")
    parser.add_argument("--words", type=int, default=600, help="words per article")
    parser.add_argument("--queries", type=int, default=50, help="timed queries per shape")
    parser.add_argument("--warmup", type=int, default=3, help="untimed queries per shape")
    parser.add_argument("--index-n", type=int, default=4000,
                        help="articles indexed through the upsert for each rate")
    parser.add_argument("--batch", type=int, default=100,
                        help="articles per upsert transaction (the indexer takes up to "
                        "NEWSFLOW_INDEX_BATCH, 100, from its backlog)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tmp", default=None, help="where the throwaway cluster lives")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's files")
    parser.add_argument("--load-only", action="store_true",
                        help="load the articles, keep the cluster and stop")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="time the queries on a cluster kept by an earlier run (no load)")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
