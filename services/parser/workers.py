"""Worker processes for CPU-bound jobs, each with a deadline; a late job's worker is killed."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

T = TypeVar("T")

# Spawned, not forked: a fork would copy the event loop, the Redis client and their threads.
_CONTEXT = multiprocessing.get_context("spawn")


def _serve(conn: Connection) -> None:
    """A worker's life: run each job it receives and send back its result or its exception."""
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

    def __init__(self) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.process: BaseProcess = _CONTEXT.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.join(5)


class WorkerPool:
    """`size` worker processes; a job past its deadline has its worker killed and replaced.

    The other workers, and the jobs they run, are untouched; the pool keeps its size.
    """

    def __init__(self, size: int) -> None:
        self._workers = [_Worker() for _ in range(max(1, size))]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)

    @property
    def pids(self) -> list[int | None]:
        return [w.process.pid for w in self._workers]

    async def run(self, timeout_s: float, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in a worker; TimeoutError after `timeout_s` (the worker is replaced).

        `func` and its arguments must be picklable (module-level functions). An exception of the
        job is raised here; a worker that dies mid-job raises RuntimeError.
        """
        worker = await self._idle.get()
        try:
            worker.conn.send((func, args))
            # The wait blocks a thread, not the event loop.
            ready = await asyncio.to_thread(worker.conn.poll, timeout_s)
            if not ready:
                raise TimeoutError(f"job took longer than {timeout_s:g} s; its worker was killed")
            ok, value = worker.conn.recv()
        except EOFError:
            worker = self._replace(worker)
            raise RuntimeError("worker process died during the job") from None
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
        fresh = _Worker()
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def close(self) -> None:
        """Stop every worker at once (running jobs are abandoned)."""
        for worker in self._workers:
            worker.kill()
