"""Log lines: a server that is down gives one warning line, a bug keeps its traceback."""

import logging
import sys
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.logging import OutageInOneLine, setup_logging


def record_of(error: BaseException, message: str = "Message fetch error") -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.makeLogRecord({"name": "newsflow.broker", "msg": message,
                                      "levelno": logging.ERROR, "levelname": "ERROR",
                                      "exc_info": sys.exc_info()})


def test_a_server_down_is_one_warning_line() -> None:
    record = record_of(RedisConnectionError("Error 111 connecting to redis:6379."))
    assert OutageInOneLine().filter(record)
    assert record.levelname == "WARNING" and record.exc_info is None
    assert record.getMessage() == (
        "Message fetch error: ConnectionError: Error 111 connecting to redis:6379.")


def test_an_outage_without_words_is_still_named() -> None:
    record = record_of(RedisConnectionError(), "janitor pass failed")
    assert OutageInOneLine().filter(record)
    assert record.getMessage() == "janitor pass failed: ConnectionError"


def test_a_warning_about_a_server_down_loses_its_traceback_not_its_words() -> None:
    error = ConnectionRefusedError(111, "Connect call failed")
    record = record_of(error, f"retry a1 at indexer: ConnectionRefusedError: {error} (attempt 2)")
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    assert OutageInOneLine().filter(record)
    assert record.exc_info is None and record.levelname == "WARNING"
    assert record.getMessage() == (
        "retry a1 at indexer: ConnectionRefusedError: [Errno 111] Connect call failed (attempt 2)")


def test_an_article_given_up_stays_an_error_in_one_line() -> None:
    record = record_of(ConnectionRefusedError(111, "Connect call failed"),
                       "dead a1 at indexer: gave up (4 attempts)")
    record.outcome = "dead"
    assert OutageInOneLine().filter(record)
    assert record.levelname == "ERROR" and record.exc_info is None


def test_a_bug_keeps_its_level_and_traceback() -> None:
    record = record_of(KeyError("title"), "janitor pass failed")
    assert OutageInOneLine().filter(record)
    assert record.levelname == "ERROR" and record.exc_info is not None


@pytest.fixture
def root_logger() -> Iterator[None]:
    """setup_logging replaces the root logger's handlers: the other tests get theirs back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_service_log_shows_no_traceback_for_an_outage(
    capsys: pytest.CaptureFixture[str], root_logger: None
) -> None:
    setup_logging("parser")
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 6379)")
    except ConnectionRefusedError:
        logging.getLogger("newsflow.janitor").exception("janitor pass failed")
    err = capsys.readouterr().err
    assert "WARNING janitor pass failed: ConnectionRefusedError: [Errno 111] Connect call" in err
    assert "Traceback" not in err
