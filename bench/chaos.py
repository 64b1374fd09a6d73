"""Prove the delivery promise under fire: every submitted article ends in the index or in the dead
letters with the right reason, while replicas are killed (-9), stopped (SIGTERM), Redis restarts
(with its append-only file, then once EMPTY), and PostgreSQL restarts.

    python bench/chaos.py [--n 2000] [--replicas 2] [--kill-every 3]

Starts its own redis-server (append-only file on), PostgreSQL and a local news site, runs
`--replicas` processes of every stage and publishes N good articles. While they flow it kills and
restarts, then wipes Redis (stopped, its data deleted, started empty): what was published before
the wipe and not yet indexed is the only loss allowed, and is reported (`lost_in_wipe`). After the
wipe it publishes N/2 more good articles, pages slower than the claim window (no entry may be
worked on by two replicas at once: `double_work`, counted by the site), bad inputs (each dead
with its reason) and malformed ones (each dead at once: one delivery, permanent). Last line:

    submitted=… indexed=… unique_in_index=… lost=… lost_in_wipe=… dead=… expected_dead=…
    double_work=… retried_malformed=… pending=… seconds=…

and the exit code is 0 only if nothing published after the wipe was lost, every good one was
indexed once, every bad and malformed one is dead as expected, double_work=0 and pending=0.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.site import Site, serving  # noqa: E402 -- after the sys.path line
from shared.broker import redis_client  # noqa: E402
from shared.janitor import group_lag  # noqa: E402
from shared.messages import (  # noqa: E402
    ArticleFailed,
    ArticleIndexed,
    ArticleSubmitted,
    article_id,
)
from shared.settings import Settings  # noqa: E402
from shared.streams import DATA_FIELD, DEAD, INDEXED, STAGES, SUBMITTED  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

# The watcher reads articles:indexed: with no watches it only acknowledges, but nothing may
# stay pending there either.
WORKERS = ("fetcher", "parser", "enricher", "indexer", "watcher")

_STARTED: list[Any] = []
"""What a run started (servers, replicas): stopped by main() however the run ends."""


@dataclass
class Replicas:
    """The stage processes, started as `python -m services.cli run <stage>`."""

    env: dict[str, str]
    logs: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    started: int = 0

    def start(self, stage: str) -> None:
        self.started += 1
        log = (self.logs / f"{stage}-{self.started}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", stage],
                                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((stage, proc))

    def alive(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [(s, p) for s, p in self.procs if p.poll() is None]

    def hit(self, sig: int, rng: random.Random) -> str:
        """Send `sig` to a random live replica and start another of its stage."""
        stage, proc = rng.choice(self.alive())
        proc.send_signal(sig)
        self.start(stage)
        return stage

    def stop(self) -> None:
        for _, proc in self.alive():
            proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def bad_inputs(site: Site) -> list[tuple[dict[str, str], str]]:
    """Raw entries for articles:submitted that must end dead, with what their reason says."""
    entries = [
        # Each reason names what only its own input can cause, so letters match one to one.
        ({DATA_FIELD: "{this is not json"}, "invalid message: Invalid JSON"),
        ({DATA_FIELD: json.dumps({"refresh": True})}, "url or html"),
        ({DATA_FIELD: json.dumps({"schema_version": 99, "url": site.base_url + "/news/x"})},
         "unsupported schema_version"),
        ({DATA_FIELD: json.dumps({"url": "http://10.0.0.1/news/private"})}, "private address"),
    ]
    entries += [({DATA_FIELD: json.dumps({"url": url})}, reason)
                for url, reason in site.bad_urls().items()]
    return entries


def malformed_inputs(site: Site, victim: str) -> list[tuple[str, dict[str, str]]]:
    """Entries for articles:submitted that can never work: each must be dead at once (one
    delivery, permanent), whatever its reason says. `victim` is the URL of an article already
    indexed: an entry naming its id must not overwrite it."""
    return [
        ("url is a number", {DATA_FIELD: json.dumps({"url": 123})}),
        ("html is a number", {DATA_FIELD: json.dumps({"html": 5})}),
        ("url is a list", {DATA_FIELD: json.dumps({"url": [site.base_url + "/news/x"]})}),
        ("invalid IDN", {DATA_FIELD: json.dumps({"url": "http://xn--zz--.test/"})}),
        ("NUL in the JSON-LD headline",
         {DATA_FIELD: json.dumps({"url": site.base_url + "/bad/nul-headline"})}),
        ("an existing article's id",
         {DATA_FIELD: json.dumps({"url": site.base_url + "/news/other.html",
                                  "html": "<html><body><h1>Overwritten?</h1><p>"
                                          + "Not the article. " * 50 + "</p></body></html>",
                                  "id": article_id(victim)})}),
    ]


# Inputs whose article may instead be stored, once cleaned (a NUL byte dropped), or under its
# own id (a submitted id ignored): then they are checked for that, not for a dead letter.
MAY_BE_STORED = ("NUL in the JSON-LD headline", "an existing article's id")


async def pending_total(client: aioredis.Redis) -> int:
    total = 0
    # The groups of the stages this run starts (WORKERS), the watcher's among them.
    for stream in (s for s in STAGES if s.group in WORKERS):
        if await client.exists(stream.name):
            groups: Any = await client.xinfo_groups(stream.name)
            for g in groups:
                total += int(g["pending"]) + await group_lag(client, stream.name, g)
    return total


async def outcome(client: aioredis.Redis) -> tuple[set[str], list[ArticleFailed]]:
    indexed: set[str] = set()
    entries: Any = await client.xrange(INDEXED.name)
    for _, fields in entries:
        indexed.add(ArticleIndexed.model_validate_json(fields[DATA_FIELD.encode()]).id)
    dead_entries: Any = await client.xrange(DEAD.name)
    dead = [ArticleFailed.model_validate_json(f[DATA_FIELD.encode()]) for _, f in dead_entries]
    return indexed, dead


async def run(n: int, replicas: int, kill_every: float, timeout: float, seed: int,
              verbose: bool = True, slow_pages: int = 6, slow_s: float = 5.0) -> dict[str, Any]:
    """Run the whole scenario; returns the figures of the last line (and `ok`)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="newsflow-chaos-"))
    redis_server = RedisServer(work / "redis")
    postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-chaos-pg-")))
    redis_server.start()
    postgres.start()
    _STARTED.extend([redis_server, postgres])

    def say(text: str) -> None:
        if verbose:
            print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    began = time.monotonic()
    claim_idle_ms = 3000
    with serving(n + n // 2, seed, slow_pages=slow_pages, slow_s=slow_s) as site:
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": postgres.url,
            # The site is on 127.0.0.1: open exactly that, so 10.0.0.1 is still refused.
            "NEWSFLOW_ALLOWED_NETWORKS": "127.0.0.1/32",
            "NEWSFLOW_OBEY_ROBOTS": "false",
            "NEWSFLOW_HOST_CONCURRENCY": "64",
            "NEWSFLOW_HOST_DELAY_S": "0",
            "NEWSFLOW_FETCH_ATTEMPTS": "1",
            # Slow pages take longer than this: only lease renewal keeps them with one replica.
            "NEWSFLOW_CLAIM_IDLE_MS": str(claim_idle_ms),
            "NEWSFLOW_MAX_DELIVERIES": "4",
            "NEWSFLOW_POLL_MS": "500",
            "NEWSFLOW_GRACEFUL_TIMEOUT_S": "5",
            "NEWSFLOW_JANITOR_INTERVAL_S": "5",
            "NEWSFLOW_MAX_PAGE_BYTES": str(5 * 1024 * 1024),
            "NEWSFLOW_METRICS_PORT": "0",
            "NEWSFLOW_API_HOST": "127.0.0.1",
        }
        stages = Replicas(env, work / "logs")
        stages.logs.mkdir()
        _STARTED.append(stages)
        for stage in WORKERS:
            for _ in range(replicas):
                stages.start(stage)

        # Its connections outlive the restarts, as the stages' do.
        client = redis_client(Settings(redis_url=redis_server.url))
        urls = site.urls()
        before = [ArticleSubmitted(url=url, source="chaos") for url in urls[:n]]
        after = [ArticleSubmitted(url=url, source="chaos") for url in urls[n:]]
        slow = [ArticleSubmitted(url=url, source="chaos") for url in site.slow_urls()]
        bad = bad_inputs(site)
        malformed: list[tuple[str, dict[str, str]]] = []
        victim_url, victim_title = "", None
        await publish(client, [a.model_dump_json() for a in before])
        say(f"published {len(before)} articles; {replicas} replicas of each stage")

        # The events, spread over the run: a kill -9 every `kill_every` seconds, one SIGTERM,
        # one Redis restart, one PostgreSQL restart, then Redis wiped and more published.
        want = {a.id for a in before}
        deadline = time.monotonic() + timeout
        redis_restarted = postgres_restarted = terminated = wiped = False
        kills = 0
        last_kill = time.monotonic()
        indexed: set[str] = set()
        dead: list[ArticleFailed] = []
        malformed_ids: dict[str, str] = {}
        indexed_before_wipe: set[str] = set()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            try:
                indexed, dead = await outcome(client)
                pending = await pending_total(client)
            except (aioredis.ConnectionError, OSError):
                continue
            progress = len(indexed & want) / max(1, len(want))
            # (Those that may be stored instead are settled once nothing is pending.)
            expected_dead = len(bad) + len(malformed) - len(MAY_BE_STORED) if wiped else 0
            finished = (not (want - indexed) and len(dead) >= expected_dead
                        and pending == 0)
            if finished and wiped and postgres_restarted:
                break
            if time.monotonic() - last_kill >= kill_every and progress < 0.95:
                last_kill = time.monotonic()
                kills += 1
                say(f"kill -9 a {stages.hit(signal.SIGKILL, rng)} replica "
                    f"({len(indexed & want)}/{len(want)} indexed)")
            if not terminated and progress >= 0.1:
                terminated = True
                say(f"SIGTERM a {stages.hit(signal.SIGTERM, rng)} replica")
            if not redis_restarted and (progress >= 0.3 or finished):
                redis_restarted = True
                say("restarting Redis (append-only file on)")
                redis_server.stop()
                await asyncio.sleep(1)
                redis_server.start()
            elif not wiped and redis_restarted and (progress >= 0.5 or finished):
                wiped = True
                titles = await in_index(postgres.url, titles=True)
                indexed_before_wipe = set(titles)
                # An entry naming an article already indexed must not overwrite it.
                victim_url = next((u for u in urls[:n] if article_id(u) in titles), urls[0])
                victim_title = titles.get(article_id(victim_url))
                malformed = malformed_inputs(site, victim=victim_url)
                say(f"Redis restarted EMPTY ({len(indexed_before_wipe & want)}/{len(want)} "
                    "indexed before the wipe)")
                redis_server.stop(kill=True)
                shutil.rmtree(redis_server.folder)
                redis_server.start()
                # From here on, what was published must all end well.
                want = {a.id for a in after} | {a.id for a in slow}
                ids = await publish(client, [a.model_dump_json() for a in after + slow]
                                    + [f[DATA_FIELD] for f, _ in bad]
                                    + [f[DATA_FIELD] for _, f in malformed])
                malformed_ids = {ids[-len(malformed) + i]: what
                                 for i, (what, _) in enumerate(malformed)}
                say(f"published {len(after)} articles, {len(slow)} pages slower than the "
                    f"claim window, {len(bad)} bad and {len(malformed)} malformed inputs")
            if not postgres_restarted and wiped and (progress >= 0.6 or finished):
                postgres_restarted = True
                say("restarting PostgreSQL")
                postgres.stop("fast")
                await asyncio.sleep(1)
                postgres.start()
        seconds = time.monotonic() - began
        indexed, dead = await outcome(client)
        pending = await pending_total(client)
        await client.aclose()
        stages.stop()
        double_work = len(site.overlaps)

    stored = await in_index(postgres.url, titles=True)
    postgres.stop()
    redis_server.stop()

    in_index_ids = set(stored)
    before_ids = {a.id for a in before}
    # Bad inputs match their reason; malformed ones their entry (any reason, but at once).
    expected_reasons = [reason for _, reason in bad]
    unmatched = list(expected_reasons)
    malformed_outcome: dict[str, str] = {}
    for letter in dead:
        what = malformed_ids.get(letter.entry_id) if letter.stream == SUBMITTED.name else None
        if what is None and letter.stream != SUBMITTED.name and letter.id:
            # Dead further down the pipeline (the NUL byte, at the indexer): by article id.
            nul_id = article_id(site.base_url + "/bad/nul-headline")
            what = "NUL in the JSON-LD headline" if letter.id == nul_id else None
        if what is not None:
            at_once = letter.permanent and letter.deliveries == 1
            malformed_outcome[what] = (f"dead at once at {letter.group}: {letter.reason}"
                                       if at_once else
                                       f"RETRIED ({letter.deliveries} deliveries): "
                                       f"{letter.reason}")
            continue
        for reason in unmatched:
            if reason in letter.reason:
                unmatched.remove(reason)
                break
    victim_now = stored.get(article_id(victim_url)) if victim_url else None
    for what, _ in malformed:
        if what in malformed_outcome:
            continue
        if what == "NUL in the JSON-LD headline" and \
                article_id(site.base_url + "/bad/nul-headline") in stored:
            malformed_outcome[what] = "stored, cleaned"
        elif what == "an existing article's id" and victim_now == victim_title:
            malformed_outcome[what] = "its id ignored: the existing article is intact"
        else:
            malformed_outcome[what] = "MISSING (neither dead nor handled)"
    if victim_title is not None and victim_now != victim_title:
        malformed_outcome["an existing article's id"] = (
            f"OVERWROTE the existing article ({victim_title!r} -> {victim_now!r})")
    failed_malformed = sorted(what for what, how in malformed_outcome.items()
                              if how.startswith(("RETRIED", "MISSING", "OVERWROTE")))
    lost_in_wipe = before_ids - in_index_ids
    everything = before_ids | want
    dead_expected = len(bad) + sum(1 for how in malformed_outcome.values()
                                   if how.startswith("dead"))
    figures = {
        "submitted": len(everything),
        "indexed": len(everything & in_index_ids),
        "submitted_after_wipe": len(want),
        "lost": len(want - in_index_ids),
        "lost_in_wipe": len(lost_in_wipe),
        "indexed_before_wipe": len(indexed_before_wipe & before_ids),
        "dead": len(dead),
        "expected_dead": dead_expected,
        "double_work": double_work,
        "retried_malformed": failed_malformed,
        "malformed": malformed_outcome,
        "pending": pending,
        "seconds": round(seconds, 1),
        "kills": kills,
        "unmatched_reasons": unmatched,
        "logs": str(stages.logs),
    }
    figures["ok"] = (figures["lost"] == 0 and not unmatched and not failed_malformed
                     and len(dead) == dead_expected and double_work == 0 and pending == 0
                     and wiped)
    return figures


async def publish(client: aioredis.Redis, bodies: list[str]) -> list[str]:
    """XADD each body to articles:submitted in one round trip; their entry ids."""
    async with client.pipeline(transaction=False) as pipe:
        for body in bodies:
            pipe.xadd(SUBMITTED.name, {DATA_FIELD: body})
        return [entry_id.decode() for entry_id in await pipe.execute()]


async def in_index(database_url: str, titles: bool = False) -> Any:
    """The ids in the search store (with their titles when asked)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, title FROM articles")
    except asyncpg.UndefinedTableError:
        rows = []
    finally:
        await conn.close()
    return {r["id"]: r["title"] for r in rows} if titles else {r["id"] for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="good articles (default 2000)")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of every stage")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kill -9")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        figures = asyncio.run(run(args.n, args.replicas, args.kill_every, args.timeout,
                                  args.seed))
    finally:
        for started in reversed(_STARTED):  # each stop is harmless when already stopped
            started.stop()
    if figures["unmatched_reasons"]:
        print(f"dead letters missing for: {figures['unmatched_reasons']}")
    for what, how in figures["malformed"].items():
        print(f"malformed: {what}: {how}")
    print(f"logs: {figures['logs']}  kills={figures['kills']}  "
          f"indexed_before_wipe={figures['indexed_before_wipe']}")
    print(" ".join(f"{k}={figures[k]}" for k in (
        "submitted", "indexed", "submitted_after_wipe", "lost", "lost_in_wipe", "dead",
        "expected_dead", "double_work", "pending", "seconds")))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
