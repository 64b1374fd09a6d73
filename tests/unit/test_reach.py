"""Waiting at start-up for a server that does not answer yet."""

import logging

import pytest

from shared.reach import when_reachable, where


async def test_waits_until_the_server_answers(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def connect() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("Connection refused")
        return "pool"

    with caplog.at_level(logging.WARNING, "newsflow.startup"):
        got = await when_reachable(connect, "Redis at db:6379/0", timeout_s=5,
                                   first_delay_s=0.01)
    assert got == "pool" and calls == 3
    assert [r.getMessage().split(" (again")[0] for r in caplog.records] == [
        "waiting for Redis at db:6379/0: Connection refused"] * 2


async def test_gives_up_after_the_wait_with_the_last_error() -> None:
    calls = 0

    async def connect() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(f"refused {calls}")

    with pytest.raises(ConnectionRefusedError, match="refused"):
        await when_reachable(connect, "PostgreSQL", timeout_s=0.2, first_delay_s=0.02)
    assert 2 <= calls <= 6  # 0.02 + 0.04 + 0.08 s of waiting fit, 0.16 more would not


async def test_other_errors_are_not_waited_for() -> None:
    calls = 0

    async def connect() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad schema")

    with pytest.raises(ValueError, match="bad schema"):
        await when_reachable(connect, "PostgreSQL", timeout_s=5, first_delay_s=0.01)
    assert calls == 1


def test_addresses_are_shown_without_credentials() -> None:
    assert where("postgresql://newsflow:secret@db:5432/newsflow") == "db:5432/newsflow"
    assert where("redis://localhost:6379/0") == "localhost:6379/0"
