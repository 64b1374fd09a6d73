"""`newsflow up`: the whole stack in the foreground on one machine, no Docker — Redis and
PostgreSQL (unless REDIS_URL / DATABASE_URL name servers to use) and every service as supervised
child processes, in one combined log."""

import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from services.cli import servers, stack
from services.cli.supervisor import Child, Supervisor
from shared.settings import Settings

UNSCALABLE = frozenset({"api"})
"""Services that run once: the API holds one port."""
CPU_BOUND = ("parser", "enricher")
"""The stages whose default replica count follows the cores."""


Say = Callable[[str], None]
"""Writes one line of `up`'s own in the combined log."""


class UpError(RuntimeError):
    """`up` cannot start: the message says why and what to do."""


def default_scale(services: Sequence[str], cores: int | None) -> dict[str, int]:
    """One replica a service; the CPU-bound stages one per two cores (1 to 4)."""
    per_cpu_stage = max(1, min(4, (cores or 1) // 2))
    return {name: per_cpu_stage if name in CPU_BOUND else 1 for name in services}


def parse_scale(values: Sequence[str], services: Sequence[str]) -> dict[str, int]:
    """`--scale parser=2 --scale enricher=2` or `--scale parser=2,enricher=2` as a mapping;
    0 leaves a service out. ValueError says what is wrong."""
    scale: dict[str, int] = {}
    for part in (p.strip() for value in values for p in value.split(",")):
        if not part:
            continue
        name, equals, count = part.partition("=")
        name = name.strip()
        if not equals or not count.strip().isdigit():
            raise ValueError(f"{part!r}: give SERVICE=COUNT, e.g. parser=2")
        if name not in services:
            raise ValueError(f"{part!r}: unknown service {name!r}; one of {', '.join(services)}")
        number = int(count)
        if name in UNSCALABLE and number > 1:
            raise ValueError(f"{part!r}: {name} runs once")
        scale[name] = number
    return scale


def _ports(start: int, taken: set[int]) -> Iterator[int]:
    """Free ports from `start` up (so a replica's metrics port is easy to guess), else any."""
    port = start
    while port < start + 200:
        if port not in taken and servers.port_is_free(port):
            taken.add(port)
            yield port
        port += 1
    while True:
        port = servers.free_port()
        if port not in taken:
            taken.add(port)
            yield port


def plan(services: Sequence[str], scale: Mapping[str, int], base_env: Mapping[str, str],
         metrics_from: int, api_port: int) -> list[Child]:
    """The children to run: each replica with its name, command and environment (its own
    metrics port; `plain` log lines, which the supervisor prefixes with the replica)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, (root, base_env.get("PYTHONPATH"))))
    ports = _ports(metrics_from, {api_port})
    children = []
    for name in services:
        for number in range(1, scale.get(name, 1) + 1):
            env = {**base_env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
                   "NEWSFLOW_METRICS_PORT": str(next(ports)), "NEWSFLOW_API_PORT": str(api_port)}
            if base_env.get("NEWSFLOW_LOG_FORMAT", "text") == "text":
                env["NEWSFLOW_LOG_FORMAT"] = "plain"
            children.append(Child(f"{name}-{number}",
                                  [sys.executable, "-m", "services.cli", "run", name], env))
    return children


def _explicit(environ: Mapping[str, str], *names: str) -> bool:
    return any(environ.get(name) for name in names)


class Servers:
    """The servers `up` started itself (none when REDIS_URL / DATABASE_URL are set)."""

    def __init__(self) -> None:
        self.redis: servers.RedisServer | None = None
        self.postgres: servers.PostgresServer | None = None

    def start(self, folder: Path, settings: Settings, environ: Mapping[str, str],
              say: Say) -> tuple[str, str]:
        """Start what is needed; the Redis and PostgreSQL URLs the services use."""
        redis_url, database_url = settings.redis_url, settings.database_url
        if not _explicit(environ, "REDIS_URL", "NEWSFLOW_REDIS_URL"):
            # On the default URL's port when it is free: then redis-cli and anything else
            # that knows the default finds it too.
            self.redis = servers.RedisServer(folder / "redis", servers.port_or_free(6379),
                                             log=folder / "redis.log", die_with_parent=True)
            say(f"starting {Path(self.redis.binary).name} on 127.0.0.1:{self.redis.port} "
                f"(data in {self.redis.folder}, append-only file on)")
            self.redis.start(wait_s=120)
            redis_url = self.redis.url
        if not _explicit(environ, "DATABASE_URL", "NEWSFLOW_DATABASE_URL"):
            self.postgres = servers.PostgresServer(folder / "postgres",
                                                   servers.port_or_free(5432))
            if (self.postgres.data / "postmaster.pid").exists():
                # Left running by an `up` that was killed outright: stop it cleanly first.
                say("stopping the PostgreSQL a previous run left behind")
                self.postgres.stop()
            say(f"starting PostgreSQL {self.postgres.version()} on 127.0.0.1:"
                f"{self.postgres.port} (data in {self.postgres.data})")
            self.postgres.start()
            database_url = self.postgres.url
        return redis_url, database_url

    def stop(self, say: Say) -> None:
        # PostgreSQL first: nothing uses it any more; Redis flushes its append-only file.
        if self.postgres:
            say("stopping PostgreSQL")
            self.postgres.stop()
            self.postgres = None
        if self.redis:
            say("stopping Redis")
            self.redis.stop()
            self.redis = None


def _wait_ready(url: str, deadline_s: float, proc_alive: Callable[[], bool]) -> bool:
    """Wait until `url` answers 200 (the API's /health: PostgreSQL reached)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc_alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 -- our own URL
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def up(services: Sequence[str], folder: Path, scale: Mapping[str, int], colour: bool,
       timestamps: bool = False) -> int:
    """Run the stack until SIGINT/SIGTERM or a replica that keeps dying; the exit code."""
    settings = Settings()
    environ = dict(os.environ)
    running = stack.read_note(folder)
    if running is not None:
        raise UpError(f"newsflow up is already running from {folder} (pid {running.pid}); "
                      "stop it first, or give another --data-dir")
    folder.mkdir(parents=True, exist_ok=True)

    api_port = servers.port_or_free(settings.api_port)
    children = plan(services, scale, environ, settings.metrics_port or 9000, api_port)
    supervisor = Supervisor(children, colour=colour, timestamps=timestamps,
                            grace_s=settings.graceful_timeout_s + 20)

    def say(text: str) -> None:
        supervisor.say("up", text)

    # Until the loop handles them, SIGTERM interrupts like Ctrl-C, so servers started so far
    # are stopped.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    owned = Servers()
    code = 0
    try:
        redis_url, database_url = owned.start(folder, settings, environ, say)
        for child in children:
            child.env.update({"REDIS_URL": redis_url, "DATABASE_URL": database_url})
        stack.write_note(folder, stack.Stack(os.getpid(), redis_url, database_url,
                                             f"http://127.0.0.1:{api_port}"))
        code = asyncio.run(_supervise(supervisor, settings, api_port, folder, say))
    except KeyboardInterrupt:
        code = 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the servers stop, whatever comes
        stack.remove_note(folder, os.getpid())
        try:
            owned.stop(say)
        finally:
            signal.signal(signal.SIGTERM, previous)
    if supervisor.failed:
        say(f"stopped: {supervisor.failed}")
        return 1
    say(f"stopped; the data stays in {folder} (newsflow up carries on from it)")
    return code


async def _supervise(supervisor: Supervisor, settings: Settings, api_port: int, folder: Path,
                     say: Say) -> int:
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            say("stopping: each replica finishes or hands back its work in hand "
                "(again to kill them now)")
            supervisor.stop()
        else:
            say("killing the replicas")
            supervisor.kill_all()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    run = asyncio.create_task(supervisor.run())
    api = f"http://127.0.0.1:{api_port}"
    has_api = any(c.name.startswith("api-") for c in supervisor.children)
    if has_api:
        ready = await asyncio.to_thread(
            _wait_ready, f"{api}/health", max(120.0, settings.startup_wait_s * 2),
            lambda: not supervisor.stopping.is_set())
    else:
        ready = True
    if not supervisor.stopping.is_set():
        metrics = ", ".join(f"{c.name} {c.env['NEWSFLOW_METRICS_PORT']}"
                            for c in supervisor.children if not c.name.startswith("api-"))
        say("newsflow is up" if ready else "newsflow is starting (the API does not answer yet)")
        if has_api:
            say(f"  search page  {api}/")
            say(f"  API          {api}/docs")
        say(f"  data folder  {folder}")
        say(f"  metrics      127.0.0.1: {metrics}")
        say("  in another terminal: newsflow publish URL --wait, newsflow search WORDS, "
            "newsflow status; Ctrl-C here stops it all")
    with contextlib.suppress(asyncio.CancelledError):
        await run
    return 0
