"""Benchmark the watcher's matching: CPU per newly indexed article against 10,000 and 100,000
watches, on a fresh PostgreSQL with generated articles (bench/search.py's generator).

Run by hand: `.venv/bin/python bench/watch.py [--articles 300] [--watches 10000,100000]`.
Targets: <= 5 ms CPU per article at 10,000 watches and <= 20 ms at 100,000.

Per article, what the watcher does (services/watcher/match.py) is timed in this process with
`time.process_time()`: reading the article's row (lexemes, filters), choosing the candidate
watches from the index, evaluating their filters and boolean queries in Python, and the one SQL
statement that checks the candidate phrase queries. "match" is the Python part alone; "article"
is all of it (the client side of the two round trips included). PostgreSQL's own CPU for those
two statements is read from /proc for its backend and printed beside ("pg mean"). Building the
index (one SQL statement per text-search configuration, then parsing) is timed apart (wall
time): it happens when the watcher starts, not per article; "update" is taking in one added
watch (the list of watches compared, only the new query compiled).

Watches are what analysts save: 1–3 words of middling frequency, some phrases, some OR, some
exclusions; a third with a country, a fifth with a language, some with a person; a few with
filters only.
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the sys.path line so the script runs from any directory without installing.
import asyncpg

from bench.search import Generator
from services.watcher.match import _ARTICLE, Matcher, WatchIndex, facts
from shared import store, watches
from tests.servers import PostgresServer

TARGETS_MS = {10_000: 5.0, 100_000: 20.0}


def make_watches(gen: Generator, n: int, seed: int) -> list[watches.Watch]:
    rng = random.Random(seed)
    middling = gen.vocabulary[100:5000]
    countries = sorted(set(gen.places.values()))
    made = []
    for i in range(n):
        words = rng.sample(middling, rng.randint(1, 3))
        roll = rng.random()
        if roll < 0.10:
            q = f'"{words[0]} {rng.choice(middling)}"'
        elif roll < 0.20:
            q = " OR ".join(words) if len(words) > 1 else f"{words[0]} OR {rng.choice(middling)}"
        elif roll < 0.30:
            q = f"{' '.join(words)} -{rng.choice(middling)}"
        elif roll < 0.33:
            q = ""
        else:
            q = " ".join(words)
        filters: dict[str, object] = {"q": q}
        if rng.random() < 0.33 or not q:
            filters["country"] = rng.choice(countries)
        if rng.random() < 0.2:
            filters["language"] = rng.choice(["en", "de", "fr"])
        if rng.random() < 0.05:
            filters["person"] = rng.choice(gen.persons)
        made.append(watches.Watch(
            id=f"w{i}", name=f"w{i}", filters=watches.WatchFilters.model_validate(filters),
            webhook=None, format="json", secret="x" * 16, feed_key="k", every_copy=False,
            created_at=datetime.now(UTC)))
    return made


def backend_cpu_s(pid: int) -> float:
    """User + system CPU of a PostgreSQL backend so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(pool: asyncpg.Pool, ids: list[str], found: list[watches.Watch],
                  backend: int) -> dict[str, float]:
    matcher = Matcher(pool)
    configs = [r[0] for r in await pool.fetch("SELECT DISTINCT ts_config::text FROM articles")]
    started = time.perf_counter()
    index = WatchIndex.of(found, matcher.compile_queries, matcher.compiled)
    for config in configs:
        await index.config(config)
    build_s = time.perf_counter() - started
    # A watch added: the index takes it in (the list compared, only the new query compiled).
    added = found[0].model_copy(update={"id": "new", "filters": watches.WatchFilters(
        q="newly added words")})
    started = time.perf_counter()
    index.update([*found, added])
    for config in configs:
        await index.config(config)
    rebuild_s = time.perf_counter() - started
    match_ms: list[float] = []
    article_ms: list[float] = []
    matched = 0
    server_before = backend_cpu_s(backend)
    for article_id in ids:
        cpu0 = time.process_time()
        row = await pool.fetchrow(_ARTICLE, article_id)
        article = facts(row)
        cpu1 = time.process_time()
        hits = await index.match(article, matcher.phrase_check)
        cpu2 = time.process_time()
        match_ms.append((cpu2 - cpu1) * 1000)
        article_ms.append((cpu2 - cpu0) * 1000)
        matched += len(hits)
    server_ms = (backend_cpu_s(backend) - server_before) * 1000 / len(ids)
    return {"build_s": build_s, "rebuild_s": rebuild_s,
            "match_median": statistics.median(match_ms),
            "match_p95": sorted(match_ms)[int(0.95 * (len(match_ms) - 1))],
            "article_median": statistics.median(article_ms),
            "article_mean": statistics.fmean(article_ms),
            "article_p95": sorted(article_ms)[int(0.95 * (len(article_ms) - 1))],
            "server_mean": server_ms, "matches": matched / len(ids)}


async def run(args: argparse.Namespace) -> int:
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-bench-pg-")))
    server.start()
    try:
        setup = await watches.connect(server.url)
        gen = Generator(args.seed, args.words)
        articles = [gen.article(n) for n in range(args.articles)]
        for i in range(0, len(articles), 100):
            await store.upsert_articles(setup, articles[i:i + 100])
        await setup.close()
        # One connection: its backend's CPU is PostgreSQL's share of the work.
        pool = await asyncpg.create_pool(server.url, min_size=1, max_size=1)
        backend = int(await pool.fetchval("SELECT pg_backend_pid()"))
        counts = [int(c) for c in args.watches.split(",")]
        everything = make_watches(gen, max(counts), args.seed)
        ids = [a.id for a in articles]
        print(f"{args.articles} articles of ~{args.words} words; CPU per article in ms "
              "(this process; PostgreSQL's backend apart)")
        print(f"{'watches':>8} {'match p50':>9} {'match p95':>9} {'article p50':>11} "
              f"{'article p95':>11} {'mean':>6} {'pg mean':>7} {'matches':>7} {'build s':>7} "
              f"{'update s':>9} "
              f"{'target':>6}")
        failed = False
        for n in counts:
            r = await measure(pool, ids, everything[:n], backend)
            target = TARGETS_MS.get(n)
            ok = target is None or r["article_median"] <= target
            failed |= not ok
            print(f"{n:>8} {r['match_median']:>9.2f} {r['match_p95']:>9.2f} "
                  f"{r['article_median']:>11.2f} {r['article_p95']:>11.2f} "
                  f"{r['article_mean']:>6.2f} {r['server_mean']:>7.2f} {r['matches']:>7.1f} "
                  f"{r['build_s']:>7.1f} {r['rebuild_s']:>9.2f} "
                  f"{f'<= {target:g}' if target else '-':>6}"
                  f"{'' if ok else '  MISSED'}")
        await pool.close()
        return 1 if failed else 0
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--words", type=int, default=600)
    parser.add_argument("--watches", default="10000,100000")
    parser.add_argument("--seed", type=int, default=18)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
