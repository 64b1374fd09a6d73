"""Child processes kept running: each replica's output in one combined log, a replica that dies
restarted with backoff, one that keeps dying the end of the run; SIGTERM to all at the end.

Written by hand on asyncio's subprocesses: supervisor libraries (supervisord, honcho) are
configured through files or run as daemons of their own, and none restarts with backoff while
also stopping everything when one child keeps failing, which `newsflow up` needs.
"""

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.cli.servers import die_with_parent

STABLE_S = 60.0
"""A replica that ran this long before it died starts its count of failures afresh."""
MAX_FAILURES = 5
"""Deaths in a row (each within STABLE_S of its start) after which the run stops."""
BACKOFF_BASE_S = 1.0
"""The first restart's delay, doubled after each death in a row."""
BACKOFF_MAX_S = 30.0

_COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


@dataclass
class Child:
    """One replica: its name in the log ("parser-2"), the command and the environment."""

    name: str
    args: Sequence[str]
    env: dict[str, str]
    colour: str = ""
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    failures: int = 0
    started: float = field(default=0.0)


class KeepsDying(RuntimeError):
    """A replica died MAX_FAILURES times in a row soon after starting."""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class Supervisor:
    """Runs the children, writes their lines prefixed with their names, restarts them."""

    def __init__(self, children: Sequence[Child], colour: bool, timestamps: bool = False,
                 out: Callable[[str], None] | None = None, grace_s: float = 40.0) -> None:
        self.children = list(children)
        self.grace_s = grace_s
        """How long the children may take to stop after SIGTERM before they are killed."""
        self.colour = colour
        self.timestamps = timestamps
        self.width = max([len(c.name) for c in self.children] + [8])
        self.out = out or self._write
        self.stopping = asyncio.Event()
        self.failed: str | None = None
        """Why the run stopped by itself (a replica that keeps dying), if it did."""
        for number, child in enumerate(self.children):
            child.colour = child.colour or _COLOURS[number % len(_COLOURS)]

    @staticmethod
    def _write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def say(self, name: str, text: str, colour: str = "1") -> None:
        """One line of the combined log, as `name | text`."""
        prefix = f"{name:<{self.width}} |"
        if self.colour:
            prefix = f"\033[{colour}m{prefix}\033[0m"
        if self.timestamps:
            prefix = time.strftime("%H:%M:%S ") + prefix
        self.out(f"{prefix} {text}")

    async def _start(self, child: Child) -> asyncio.subprocess.Process:
        child.started = time.monotonic()
        return await asyncio.create_subprocess_exec(
            *child.args, env=child.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            # Its own session: a Ctrl-C reaches `up` only, which stops the children in order.
            start_new_session=True,
            # One prctl call: safe between fork and exec.
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
            limit=4 * 1024 * 1024,
        )

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None  # noqa: S101 -- started with stdout=PIPE
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line over the limit: its start, cut
                raw = await proc.stdout.read(64 * 1024)
            if not raw:
                return
            self.say(child.name, raw.decode(errors="replace").rstrip("\n"), child.colour)

    async def _keep_running(self, child: Child) -> None:
        while not self.stopping.is_set():
            proc = child.proc = await self._start(child)
            if self.stopping.is_set():  # stopped while it was starting
                proc.send_signal(signal.SIGTERM)
            pump = asyncio.create_task(self._pump(child, proc))
            code = await proc.wait()
            await pump
            if self.stopping.is_set():
                return
            ran = time.monotonic() - child.started
            child.failures = 1 if ran >= STABLE_S else child.failures + 1
            if child.failures >= MAX_FAILURES:
                self.failed = (f"{child.name} keeps dying: it exited with "
                               f"{describe_exit(code)} {child.failures} times in a row, each "
                               f"within {STABLE_S:.0f} s of starting (its lines above say why)")
                self.say("up", self.failed, "31")
                self.stopping.set()
                return
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (child.failures - 1))
            child.restarts += 1
            self.say("up", f"{child.name} exited with {describe_exit(code)} after {ran:.0f} s; "
                           f"restarting it in {delay:.3g} s (restart {child.restarts})", "33")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def run(self) -> None:
        """Run every child until stop() or a child that keeps dying; then stop them all."""
        tasks = [asyncio.create_task(self._keep_running(c)) for c in self.children]
        await self.stopping.wait()
        await self.terminate_all()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self.stopping.set()

    async def terminate_all(self) -> None:
        """SIGTERM to every child (each finishes or hands back its work), SIGKILL to those
        still running after `grace_s`."""
        grace_s = self.grace_s
        running = [c.proc for c in self.children if c.proc and c.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in running]
        if not waits:
            return
        _, late = await asyncio.wait(waits, timeout=grace_s)
        if late:
            self.say("up", f"{len(late)} replica(s) still running after {grace_s:.3g} s: killed",
                     "31")
            for proc in running:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.wait(late)

    def kill_all(self) -> None:
        """A second Ctrl-C: no more waiting."""
        for child in self.children:
            if child.proc and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.proc.pid, signal.SIGKILL)
