"""Worker processes for CPU-bound jobs, each with a deadline and a memory cap; a late job's worker
is killed."""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

T = TypeVar("T")

# Spawned, not forked: a fork would copy the event loop, the Redis client and their threads.
_CONTEXT = multiprocessing.get_context("spawn")


class WorkerDied(RuntimeError):
    """The job's worker died under it: killed, crashed, or out of its memory cap."""


def _serve(conn: Connection, memory_mb: int = 0) -> None:
    """A worker's life: run each job it receives and send back its result or its exception.

    With `memory_mb`, the process's address space is capped there (RLIMIT_AS): a job that would
    grow past it gets a MemoryError instead of taking the machine's memory."""
    if memory_mb > 0:
        # The soft limit only, and never above a hard limit set from outside (a container's).
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the pool is gone (closed, or its replica killed)
            return
        func, args = job
        try:
            reply: tuple[bool, Any] = (True, func(*args))
        except Exception as error:  # any failure of the job goes back to the caller
            reply = (False, error)
        try:
            conn.send(reply)
        except OSError:  # the pool is gone (its replica was killed mid-job): so is the worker
            return
        except Exception as error:  # an unpicklable result or exception
            conn.send((False, RuntimeError(f"worker could not send its reply: {error!r}")))


class _Worker:
    """One process and the pipe to it."""

    def __init__(self, memory_mb: int = 0) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.process: BaseProcess = _CONTEXT.Process(
            target=_serve, args=(child, memory_mb), daemon=True)
        self.process.start()
        child.close()

    def exit_reason(self) -> str:
        """How the process ended, if it did ("killed by signal 9", "exit code 1")."""
        self.process.join(1)
        code = self.process.exitcode
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def kill(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.join(5)


class WorkerPool:
    """`size` worker processes, each capped at `memory_mb` of address space (0: no cap); a job
    past its deadline has its worker killed and replaced, and so has a job out of memory.

    The other workers, and the jobs they run, are untouched; the pool keeps its size.
    """

    def __init__(self, size: int, memory_mb: int = 0) -> None:
        self.memory_mb = memory_mb
        self._workers = [_Worker(memory_mb) for _ in range(max(1, size))]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)

    @property
    def pids(self) -> list[int | None]:
        return [w.process.pid for w in self._workers]

    async def run(self, timeout_s: float, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a worker; TimeoutError after `timeout_s` (the worker is replaced).

        `func` and its arguments must be picklable (module-level functions). An exception of the
        job is raised here; a worker that dies mid-job, or runs out of memory, raises WorkerDied.
        """
        worker = await self._idle.get()
        try:
            worker.conn.send((func, args))
            # The wait blocks a thread, not the event loop.
            ready = await asyncio.to_thread(worker.conn.poll, timeout_s)
            if not ready:
                raise TimeoutError(f"job took longer than {timeout_s:g} s; its worker was killed")
            ok, value = worker.conn.recv()
            if not ok and isinstance(value, MemoryError):
                # What the process holds after a failed allocation is anyone's guess: a fresh
                # one takes the next job.
                worker = self._replace(worker)
                raise WorkerDied(f"the job ran out of memory (the cap is {self.memory_mb} MB)")
        except WorkerDied:
            raise
        except TimeoutError:  # (an OSError too, but this worker is alive, and busy)
            worker = self._replace(worker)
            raise
        except (EOFError, OSError):  # the pipe closed or reset under the job: the worker died
            reason = worker.exit_reason()
            worker = self._replace(worker)
            raise WorkerDied(f"worker process died during the job ({reason})") from None
        except BaseException:
            # A late, cancelled or unsendable job: the worker may still be busy with it, so it
            # can never take another job.
            worker = self._replace(worker)
            raise
        finally:
            self._idle.put_nowait(worker)
        if not ok:
            raise value
        result: T = value
        return result

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self.memory_mb)
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def close(self) -> None:
        """Stop every worker at once (running jobs are abandoned)."""
        for worker in self._workers:
            worker.kill()
