"""Prove the delivery promise under fire: every submitted article ends in the index or in the dead
letters with the right reason, while replicas are killed (-9), stopped (SIGTERM), and Redis and
PostgreSQL restart.

    python bench/chaos.py [--n 2000] [--replicas 2] [--kill-every 3]

Starts its own redis-server (append-only file on), PostgreSQL and a local news site, runs
`--replicas` processes of every stage, publishes N good articles plus K bad inputs, then kills
and restarts while they flow. Last line:

    submitted=N indexed=… unique_in_index=… lost=… dead=… expected_dead=K pending=… seconds=…

and the exit code is 0 only if lost=0, indexed == unique_in_index == N, dead == K (each with the
right reason) and pending=0.
"""

import argparse
import asyncio
import json
import os
import random
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
from shared.messages import ArticleFailed, ArticleIndexed, ArticleSubmitted  # noqa: E402
from shared.streams import DATA_FIELD, DEAD, INDEXED, STAGES, SUBMITTED  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402

WORKERS = ("fetcher", "parser", "enricher", "indexer")


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


async def pending_total(client: aioredis.Redis) -> int:
    total = 0
    # The stages this run starts (WORKERS): the watcher's streams have no reader here.
    for stream in (s for s in STAGES if s.group in WORKERS):
        if await client.exists(stream.name):
            groups: Any = await client.xinfo_groups(stream.name)
            total += sum(int(g["pending"]) + int(g.get("lag") or 0) for g in groups)
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
              verbose: bool = True) -> dict[str, Any]:
    """Run the whole scenario; returns the figures of the last line (and `ok`)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="newsflow-chaos-"))
    redis_server = RedisServer(work / "redis")
    postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-chaos-pg-")))
    redis_server.start()
    postgres.start()

    def say(text: str) -> None:
        if verbose:
            print(f"[{time.monotonic() - began:6.1f} s] {text}", flush=True)

    began = time.monotonic()
    with serving(n, seed) as site:
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
            "NEWSFLOW_CLAIM_IDLE_MS": "3000",
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
        for stage in WORKERS:
            for _ in range(replicas):
                stages.start(stage)

        client = aioredis.from_url(redis_server.url)
        good = [ArticleSubmitted(url=url, source="chaos") for url in site.urls()]
        bad = bad_inputs(site)
        async with client.pipeline(transaction=False) as pipe:
            for article in good:
                pipe.xadd(SUBMITTED.name, {DATA_FIELD: article.model_dump_json()})
            for fields, _ in bad:
                pipe.xadd(SUBMITTED.name, fields)  # type: ignore[arg-type]
            await pipe.execute()
        say(f"published {len(good)} articles and {len(bad)} bad inputs; "
            f"{replicas} replicas of each stage")

        # The events, spread over the run: a kill -9 every `kill_every` seconds, one SIGTERM,
        # one Redis restart, one PostgreSQL restart.
        want = {a.id for a in good}
        deadline = time.monotonic() + timeout
        redis_restarted = postgres_restarted = terminated = False
        kills = 0
        last_kill = time.monotonic()
        indexed: set[str] = set()
        dead: list[ArticleFailed] = []
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            try:
                indexed, dead = await outcome(client)
                pending = await pending_total(client)
            except (aioredis.ConnectionError, OSError):
                continue
            progress = len(indexed & want) / max(1, len(want))
            finished = not (want - indexed) and len(dead) >= len(bad) and pending == 0
            if finished and redis_restarted and postgres_restarted:
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
                say("restarting Redis")
                redis_server.stop()
                await asyncio.sleep(1)
                redis_server.start()
            if not postgres_restarted and (progress >= 0.6 or finished):
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

    conn = await asyncpg.connect(postgres.url)
    in_index = {r["id"] for r in await conn.fetch("SELECT id FROM articles")}
    await conn.close()
    postgres.stop()
    redis_server.stop()

    expected_reasons = [reason for _, reason in bad]
    unmatched = list(expected_reasons)
    for letter in dead:
        for reason in unmatched:
            if reason in letter.reason:
                unmatched.remove(reason)
                break
    figures = {
        "submitted": len(good),
        "indexed": len(indexed & want),
        "unique_in_index": len(in_index & want),
        "lost": len(want - indexed - in_index),
        "dead": len(dead),
        "expected_dead": len(bad),
        "pending": pending,
        "seconds": round(seconds, 1),
        "kills": kills,
        "unmatched_reasons": unmatched,
        "logs": str(stages.logs),
    }
    figures["ok"] = (figures["lost"] == 0 and figures["indexed"] == figures["unique_in_index"]
                     == len(good) and figures["dead"] == len(bad) and not unmatched
                     and pending == 0)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="good articles (default 2000)")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of every stage")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kill -9")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    figures = asyncio.run(run(args.n, args.replicas, args.kill_every, args.timeout, args.seed))
    if figures["unmatched_reasons"]:
        print(f"dead letters missing for: {figures['unmatched_reasons']}")
    print(f"logs: {figures['logs']}  kills={figures['kills']}")
    print(" ".join(f"{k}={figures[k]}" for k in ("submitted", "indexed", "unique_in_index",
                                                   "lost", "dead", "expected_dead", "pending",
                                                   "seconds")))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
