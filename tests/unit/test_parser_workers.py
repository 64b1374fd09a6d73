"""The parser's worker pool: a late job fails with its reason and its worker is replaced."""

import operator
import os
import time

import pytest

from services.parser.workers import WorkerPool


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
