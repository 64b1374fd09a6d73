"""Measure the whole pipeline against its compute bound.

    python bench/pipeline.py [--n 2000] [--replicas 1] [--rate-phase]

Serves N generated article pages from a local site, starts its own redis-server and PostgreSQL and
one process per stage (`--replicas` of the CPU-bound parser and enricher), publishes the N URLs
and waits for all of them in articles:indexed. It prints articles/s end to end, publish→indexed
latency percentiles, per-stage CPU ms per article, peak resident memory per service, and the
messaging overhead: a stage's CPU per article minus the same work done directly, and the CPU
of one hop with no work in it (relaying this run's parsed articles). In the same
run it does that work — fetch, parse, enrich, index — in one plain Python loop with no Redis:
the compute bound. With --rate-phase it then publishes at half the measured peak and reports the
latency there. Last line:

    articles_per_s=… compute_bound_per_s=… ratio=… p50_ms=… p95_ms=…
"""

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.site import serving  # noqa: E402 -- after the sys.path line
from shared import store  # noqa: E402
from shared.broker import Stage  # noqa: E402
from shared.messages import (  # noqa: E402
    ArticleEnriched,
    ArticleIndexed,
    ArticleParsed,
    ArticleSubmitted,
)
from shared.settings import Settings  # noqa: E402
from shared.streams import DATA_FIELD, ENRICHED, INDEXED, PARSED, SUBMITTED  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

STAGES = ("fetcher", "parser", "enricher", "indexer")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (the parser's worker pool)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children (worker processes still running)."""
    total = cpu_seconds(pid)
    for child in _children(pid):
        total += cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        for kid in kids:
            found.append(int(kid))
            found.extend(_children(int(kid)))
    return found


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """Memory of a process and its live children from /proc: VmHWM (peak resident) or VmRSS
    (resident now)."""
    total = 0.0
    for p in (pid, *_children(pid)):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                total += int(line.split()[1]) / 1024
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def wait_indexed(
    client: aioredis.Redis, ids: set[str], start: str, published: dict[str, float],
    timeout: float, at: dict[int, Any] | None = None,
) -> dict[str, float]:
    """Follow articles:indexed until every id is there; returns id → latency in ms (from the
    publish time to the time the indexed event was added, both by Redis' clock). `at` maps a
    count of indexed articles to a callback run when it is reached."""
    latencies: dict[str, float] = {}
    cursor = start
    deadline = time.monotonic() + timeout
    while len(latencies) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - len(latencies)} articles not indexed in {timeout} s")
        reply: Any = await client.xread({INDEXED.name: cursor}, block=1000, count=1000)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                done = ArticleIndexed.model_validate_json(fields[DATA_FIELD.encode()])
                if done.id in ids and done.id not in latencies:
                    latencies[done.id] = int(cursor.split("-")[0]) - published[done.id]
                    if at and len(latencies) in at:
                        at[len(latencies)]()
    return latencies


async def publish(client: aioredis.Redis, articles: list[ArticleSubmitted],
                  rate: float | None = None) -> dict[str, float]:
    """XADD the articles (all at once, or `rate` a second); returns id → publish time (ms, from
    the entry id: Redis' clock, the same one the indexed events carry)."""
    published: dict[str, float] = {}
    if rate is None:
        async with client.pipeline(transaction=False) as pipe:
            for article in articles:
                pipe.xadd(SUBMITTED.name, {DATA_FIELD: article.model_dump_json()})
            ids = await pipe.execute()
        for article, entry_id in zip(articles, ids, strict=True):
            published[article.id] = int(entry_id.decode().split("-")[0])
        return published
    began = time.monotonic()
    for i, article in enumerate(articles):
        await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
        entry_id = await client.xadd(SUBMITTED.name, {DATA_FIELD: article.model_dump_json()})
        published[article.id] = int(entry_id.decode().split("-")[0])
    return published


def messaging_cost(redis_url: str) -> float:
    """CPU ms per message of one hop with no work in it, measured in a process of its own (as
    a stage runs): see `relay`."""
    done = subprocess.run([sys.executable, __file__, "--relay", redis_url],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


async def relay(redis_url: str, count: int = 2000) -> float:
    """CPU ms per message of one hop with no work in it: the articles the parser produced in
    this run are relayed by a stage whose handler only re-types the event (read, decode,
    validate, encode, hand on, acknowledge, metrics). On database 1; the CPU counted starts
    once the stage is up and includes adding the entries (pessimistic)."""
    client = aioredis.from_url(redis_url)
    entries: Any = await client.xrange(PARSED.name, count=count)
    await client.aclose()
    relay_url = redis_url.rsplit("/", 1)[0] + "/1"
    relay_client = aioredis.from_url(relay_url)
    await relay_client.flushdb()
    stage = Stage("enricher", Settings(redis_url=relay_url, poll_ms=100,
                                       janitor_interval_s=3600))
    relayed = [0]
    done = asyncio.Event()

    @stage.handle(PARSED, to=ENRICHED)
    async def relay(event: ArticleParsed) -> ArticleEnriched:
        relayed[0] += 1
        if relayed[0] == len(entries):
            done.set()
        return ArticleEnriched(**event.model_dump(exclude={"trace"}), trace=event.trace)

    async with stage.running():
        began = time.process_time()
        async with relay_client.pipeline(transaction=False) as pipe:
            for _, fields in entries:
                pipe.xadd(PARSED.name, fields)
            await pipe.execute()
        await done.wait()
        cpu = time.process_time() - began
    await relay_client.aclose()
    return cpu * 1000 / max(1, len(entries))


async def compute_bound(urls: list[str], settings: Settings, database_url: str) -> dict[str, Any]:
    """The same work in one plain loop, no Redis: fetch, parse, enrich, index, one by one.
    CPU is this thread's only: the local site answers from other threads of this process."""
    from services.enricher.enrich import Enricher
    from services.fetcher.fetch import fetch_page, make_client
    from services.parser.extract import extract_article

    enricher = Enricher()
    pool = await store.connect(database_url)
    client = make_client(settings)
    # Warm up as the services were (first calls load caches and connections).
    for url in urls[:5]:
        page = await fetch_page(client, url, settings)
        extraction = extract_article(page.html, page.final_url)
        enricher.enrich(extraction.title, extraction.text, extraction.language)
    cpu = {"fetch": 0.0, "parse": 0.0, "enrich": 0.0, "index": 0.0}
    began = time.perf_counter()
    for url in urls:
        t = time.thread_time()
        page = await fetch_page(client, url, settings)
        cpu["fetch"] += time.thread_time() - t
        t = time.thread_time()
        extraction = extract_article(page.html, page.final_url)
        cpu["parse"] += time.thread_time() - t
        t = time.thread_time()
        found = enricher.enrich(extraction.title, extraction.text, extraction.language)
        cpu["enrich"] += time.thread_time() - t
        t = time.thread_time()
        article = ArticleEnriched(
            id="bound-" + url.rsplit("/", 1)[1], url=url + "?bound",
            **(dataclasses.asdict(extraction) | dataclasses.asdict(found)),
        )
        await store.upsert_articles(pool, [article])
        cpu["index"] += time.thread_time() - t
    seconds = time.perf_counter() - began
    await client.aclose()
    await pool.close()
    return {"per_s": len(urls) / seconds,
            "cpu_ms": {k: v * 1000 / len(urls) for k, v in cpu.items()}}


async def run(n: int, replicas: int, rate_phase: bool, bound_n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="newsflow-bench-"))
    redis_server = RedisServer(work / "redis")
    postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-bench-pg-")))
    redis_server.start()
    postgres.start()
    procs: dict[str, list[subprocess.Popen[bytes]]] = {}
    results: dict[str, Any] = {"n": n, "replicas": replicas}
    try:
        with serving(n + (n // 2 if rate_phase else 0)) as site:
            env = {**os.environ, "REDIS_URL": redis_server.url, "DATABASE_URL": postgres.url,
                   "NEWSFLOW_ALLOW_PRIVATE_NETWORKS": "true", "NEWSFLOW_OBEY_ROBOTS": "false",
                   "NEWSFLOW_HOST_CONCURRENCY": "64", "NEWSFLOW_HOST_DELAY_S": "0",
                   "NEWSFLOW_METRICS_PORT": "0", "NEWSFLOW_API_HOST": "127.0.0.1",
                   "NEWSFLOW_POLL_MS": "200"}
            logs = work / "logs"
            logs.mkdir()
            for stage in STAGES:
                count = replicas if stage in ("parser", "enricher") else 1
                procs[stage] = [
                    subprocess.Popen(
                        [sys.executable, "-m", "services.cli", "run", stage], env=env, cwd=ROOT,
                        stdout=(logs / f"{stage}-{i}.log").open("wb"), stderr=subprocess.STDOUT)
                    for i in range(count)
                ]
            urls = site.urls()
            client = aioredis.from_url(redis_server.url)
            # Warm up (model loading, first connections) on a few articles outside the count.
            warm = [ArticleSubmitted(url=u + "?warm") for u in urls[:8]]
            start = (await client.xrevrange(INDEXED.name, count=1) or [(b"0-0", {})])[0][0]
            published = await publish(client, warm)
            await wait_indexed(client, set(published), start.decode(), published, 300)

            cpu_before = {s: sum(tree_cpu_seconds(p.pid) for p in ps) for s, ps in procs.items()}
            batch = [ArticleSubmitted(url=u) for u in urls[:n]]
            start = (await client.xrevrange(INDEXED.name, count=1))[0][0].decode()
            began = time.perf_counter()
            published = await publish(client, batch)
            # Resident memory of every service after 1,000 articles and at the end: it should
            # stay flat (extractors and parsers are known to grow).
            rss: dict[str, list[float]] = {s: [] for s in STAGES}

            def sample() -> None:
                for stage, ps in procs.items():
                    rss[stage].append(max(memory_mb(p.pid, "VmRSS") for p in ps))

            latencies = await wait_indexed(client, set(published), start, published, 3600,
                                           at={min(1000, n): sample})
            sample()
            results["rss_mb"] = rss
            results["rss_first_at"] = min(1000, n)
            seconds = time.perf_counter() - began
            cpu_after = {s: sum(tree_cpu_seconds(p.pid) for p in ps) for s, ps in procs.items()}
            results["articles_per_s"] = n / seconds
            results["p50_ms"] = pct(list(latencies.values()), 0.50)
            results["p95_ms"] = pct(list(latencies.values()), 0.95)
            results["p99_ms"] = pct(list(latencies.values()), 0.99)
            results["stage_cpu_ms"] = {
                s: (cpu_after[s] - cpu_before[s]) * 1000 / n for s in STAGES}

            if rate_phase:
                rate = results["articles_per_s"] / 2
                half = [ArticleSubmitted(url=u) for u in urls[n:n + n // 2]]
                start = (await client.xrevrange(INDEXED.name, count=1))[0][0].decode()
                pub = asyncio.create_task(publish(client, half, rate=rate))
                published = await pub
                lat = await wait_indexed(client, set(published), start, published, 3600)
                results["half_load_rate"] = rate
                results["half_load_p50_ms"] = pct(list(lat.values()), 0.50)
                results["half_load_p95_ms"] = pct(list(lat.values()), 0.95)
            results["peak_rss_mb"] = {s: max(memory_mb(p.pid) for p in ps)
                                      for s, ps in procs.items()}
            for ps in procs.values():
                for p in ps:
                    p.terminate()
            for ps in procs.values():
                for p in ps:
                    p.wait(60)
            results["relay_ms"] = messaging_cost(redis_server.url)
            await client.aclose()

            settings = Settings(allow_private_networks=True, obey_robots=False)
            # The same pages as the pipeline's (sizes vary), fetched again under other ids.
            bound_urls = urls[:bound_n]
            bound = await compute_bound(bound_urls, settings, postgres.url)
            results["compute_bound_per_s"] = bound["per_s"]
            results["compute_cpu_ms"] = bound["cpu_ms"]
    finally:
        for ps in procs.values():
            for p in ps:
                if p.poll() is None:
                    p.kill()
        postgres.stop()
        redis_server.stop()
    work_cpu = {"fetcher": "fetch", "parser": "parse", "enricher": "enrich", "indexer": "index"}
    results["overhead_ms"] = {
        s: results["stage_cpu_ms"][s] - results["compute_cpu_ms"][work_cpu[s]] for s in STAGES}
    results["ratio"] = results["articles_per_s"] / results["compute_bound_per_s"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="articles through the pipeline")
    parser.add_argument("--replicas", type=int, default=1,
                        help="replicas of each CPU-bound stage (parser, enricher)")
    parser.add_argument("--bound-n", type=int, default=None,
                        help="articles for the compute-bound loop (default: the same N)")
    parser.add_argument("--relay", metavar="REDIS_URL", help=argparse.SUPPRESS)
    parser.add_argument("--rate-phase", action="store_true",
                        help="also measure latency at half the peak rate")
    args = parser.parse_args()
    if args.relay:
        print(asyncio.run(relay(args.relay)))
        return 0
    r = asyncio.run(run(args.n, args.replicas, args.rate_phase, args.bound_n or args.n))
    print(f"machine: {os.cpu_count()} cores; {args.n} articles; replicas of parser and "
          f"enricher: {args.replicas}")
    # "extra": the stage's CPU beyond the same work done directly — messaging, and what only a
    # service does (carrying the page compressed, politeness and duplicate state in Redis).
    print(f"{'stage':<10}{'cpu ms/article':>16}{'work ms':>10}{'extra ms':>13}"
          f"{'peak RSS MB':>13}")
    work = {"fetcher": "fetch", "parser": "parse", "enricher": "enrich", "indexer": "index"}
    for s in STAGES:
        print(f"{s:<10}{r['stage_cpu_ms'][s]:>16.2f}{r['compute_cpu_ms'][work[s]]:>10.2f}"
              f"{r['overhead_ms'][s]:>13.2f}{r['peak_rss_mb'][s]:>13.0f}")
    growth = {s: v[-1] / v[0] - 1 for s, v in r["rss_mb"].items() if len(v) == 2 and v[0]}
    print(f"resident MB at {r['rss_first_at']} articles -> at the end: " + ", ".join(
        f"{s} {r['rss_mb'][s][0]:.0f}->{r['rss_mb'][s][-1]:.0f} ({growth.get(s, 0):+.0%})"
        for s in STAGES))
    print(f"latency publish->indexed ms: p50 {r['p50_ms']:.0f}  p95 {r['p95_ms']:.0f}  "
          f"p99 {r['p99_ms']:.0f} (all {args.n} published at once)")
    if "half_load_rate" in r:
        print(f"at half of peak ({r['half_load_rate']:.1f}/s): p50 {r['half_load_p50_ms']:.0f} ms"
              f"  p95 {r['half_load_p95_ms']:.0f} ms")
    print(f"messaging, one hop with no work (relaying this run's parsed articles): "
          f"{r['relay_ms']:.2f} ms CPU per article")
    print(f"articles_per_s={r['articles_per_s']:.1f} "
          f"compute_bound_per_s={r['compute_bound_per_s']:.1f} ratio={r['ratio']:.2f} "
          f"p50_ms={r['p50_ms']:.0f} p95_ms={r['p95_ms']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
