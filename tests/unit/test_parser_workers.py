"""The parser's worker pool: a late job fails with its reason and its worker is replaced."""

import multiprocessing
import operator
import os
import signal
import threading
import time

import pytest

from services.parser.workers import WorkerDied, WorkerPool, _serve


@pytest.fixture
def pool() -> WorkerPool:
    return WorkerPool(1)


async def test_a_late_job_times_out_and_the_pool_keeps_working(pool: WorkerPool) -> None:
    try:
        assert await pool.run(30, operator.add, 2, 3) == 5  # the worker is up
        stuck = pool.pids[0]
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"longer than 0\.5 s"):
            await pool.run(0.5, time.sleep, 60)
        assert time.monotonic() - started < 10
        # The stuck process is gone and a fresh one serves the next job.
        assert pool.pids[0] != stuck
        assert not _alive(stuck)
        assert await pool.run(30, operator.mul, 6, 7) == 42
    finally:
        pool.close()


async def test_a_job_error_reaches_the_caller_and_the_worker_survives(pool: WorkerPool) -> None:
    try:
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.run(30, int, "not a number")
        worker = pool.pids[0]
        assert await pool.run(30, operator.add, 1, 1) == 2
        assert pool.pids[0] == worker
    finally:
        pool.close()


def _alive(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_whose_pool_is_gone_ends_quietly() -> None:
    # The replica was killed mid-job: the worker's reply finds the pipe closed.
    parent, child = multiprocessing.Pipe()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            _serve(child)
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=serve)
    worker.start()
    parent.send((time.sleep, (0.3,)))
    parent.close()
    worker.join(10)
    assert not worker.is_alive() and errors == []


def test_a_worker_whose_pool_was_killed_ends_quietly() -> None:
    # A replica killed -9 resets the pipe under the worker's read (not a clean end of file).
    class Reset:
        def recv(self) -> object:
            raise ConnectionResetError(104, "Connection reset by peer")

    _serve(Reset())  # type: ignore[arg-type]  # returns; raising would print a traceback


def allocate(megabytes: int) -> int:
    """A job that needs `megabytes` of memory at once."""
    return len(bytearray(megabytes * 1024 * 1024))


def die() -> None:
    """A job whose process is killed under it (as the kernel's out-of-memory killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)


async def test_a_job_over_the_memory_cap_fails_and_its_worker_is_replaced() -> None:
    pool = WorkerPool(1, memory_mb=256)
    try:
        assert await pool.run(30, allocate, 64) == 64 * 1024 * 1024  # under the cap
        worker = pool.pids[0]
        with pytest.raises(WorkerDied, match="ran out of memory \\(the cap is 256 MB\\)"):
            await pool.run(30, allocate, 1024)
        assert pool.pids[0] != worker and not _alive(worker)
        assert await pool.run(30, allocate, 64) == 64 * 1024 * 1024
    finally:
        pool.close()


async def test_without_a_cap_the_same_job_runs() -> None:
    pool = WorkerPool(1, memory_mb=0)
    try:
        assert await pool.run(30, allocate, 300) == 300 * 1024 * 1024
    finally:
        pool.close()


async def test_a_worker_killed_mid_job_is_reported_and_replaced(pool: WorkerPool) -> None:
    try:
        with pytest.raises(WorkerDied, match="died during the job \\(killed by signal 9\\)"):
            await pool.run(30, die)
        assert await pool.run(30, operator.add, 2, 2) == 4
        # A late job is still a timeout, not a death.
        with pytest.raises(TimeoutError):
            await pool.run(0.3, time.sleep, 30)
    finally:
        pool.close()
