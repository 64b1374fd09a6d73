"""The failure policy: which errors are permanent at once, by their mechanism."""

import asyncpg
import idna
import pytest
from pydantic import BaseModel, ValidationError

from shared.broker import Entry, describe
from shared.errors import PermanentError, TransientError, UnreadableEntry, is_permanent
from shared.streams import DATA_FIELD, SUBMITTED


class _Strict(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Strict.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("no error")


def _idna_error() -> Exception:
    try:
        idna.encode("xn--zz--.test")
    except idna.IDNAError as exc:
        return exc
    raise AssertionError("no error")


@pytest.mark.parametrize("exc", [
    PermanentError("page over the size cap"),
    UnreadableEntry("invalid message"),
    _validation_error(),
    _idna_error(),
    UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"),
    asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
    asyncpg.ProgramLimitExceededError("string is too long for tsvector"),
])
def test_input_that_can_never_work_is_permanent(exc: Exception) -> None:
    assert is_permanent(exc)


@pytest.mark.parametrize("exc", [
    TransientError("503"),
    ConnectionError("Connection lost"),
    TimeoutError(),
    RuntimeError("a bug"),
    asyncpg.DeadlockDetectedError("deadlock"),
    asyncpg.CannotConnectNowError("starting up"),
])
def test_what_may_heal_is_transient(exc: Exception) -> None:
    assert not is_permanent(exc)


@pytest.mark.parametrize("body", [b'{"url": 123}', b'{"html": 5}', b'{"url": ["x"]}',
                                  b"{not json", b'"a string"', b"\xff\xfe"])
def test_any_failure_to_decode_an_entry_is_permanent_and_says_why(body: bytes) -> None:
    entry = Entry(SUBMITTED, b"1-0", {DATA_FIELD.encode(): body})
    with pytest.raises(UnreadableEntry) as caught:
        entry.event()
    assert is_permanent(caught.value)
    reason = describe(caught.value)
    assert reason and not reason.startswith("UnreadableEntry"), reason


async def test_a_redis_that_refuses_config_is_tolerated_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redis.exceptions import ResponseError

    from shared.broker import check_persistence

    class Managed:  # a managed Redis: CONFIG renamed away
        async def config_get(self, name: str) -> dict[str, str]:
            raise ResponseError("unknown command 'CONFIG'")

    assert await check_persistence(Managed()) is None  # type: ignore[arg-type]
    assert "cannot check that Redis keeps an append-only file" in caplog.text
