"""Waiting at start-up for a server that does not answer yet (Redis, PostgreSQL).

A replica started while its server restarts, or before it is up, waits and says so, instead of
exiting with a traceback and leaving the restarting to whoever runs it.
"""

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

SERVER_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ConnectionError, socket.gaierror,
    asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
)
"""What the Redis and PostgreSQL clients raise while their server is down or restarting."""
CONNECT_ERRORS: tuple[type[BaseException], ...] = (OSError, *SERVER_DOWN)
"""What connecting raises while the server is not up (asyncpg may raise a plain OSError)."""

logger = logging.getLogger("newsflow.startup")

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 5.0


def where(url: str) -> str:
    """A server's address without the user and password: "db.example:5432/newsflow"."""
    return url.rsplit("@", 1)[-1].split("://", 1)[-1]


async def when_reachable(
    connect: Callable[[], Awaitable[T]],
    what: str,
    timeout_s: float,
    first_delay_s: float = _FIRST_DELAY_S,
) -> T:
    """What `connect()` returns once it does not fail for want of its server (CONNECT_ERRORS),
    tried again with a doubling delay for up to `timeout_s`; then its last error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = first_delay_s
    while True:
        try:
            return await connect()
        except CONNECT_ERRORS as error:
            if loop.time() + delay > deadline:
                raise
            logger.warning("waiting for %s: %s (again in %.1f s)", what, error, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _MAX_DELAY_S)
