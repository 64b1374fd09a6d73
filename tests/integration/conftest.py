"""Real servers for the integration tests: redis-server and PostgreSQL on free ports."""

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from shared import store
from shared.settings import Settings
from tests.integration.localsite import LocalSite, serve
from tests.servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(Path(tempfile.mkdtemp(prefix="newsflow-redis-")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Under /tmp itself: PostgreSQL runs as an unprivileged user when the tests run as root.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-pg-")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator["aioredis.Redis[bytes]"]:
    client: aioredis.Redis[bytes] = aioredis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def db(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Pool]:
    pool = await store.connect(postgres_server.url)
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE articles")
    yield pool
    await pool.close()


@pytest.fixture
def settings(redis_server: RedisServer, postgres_server: PostgresServer) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        database_url=postgres_server.url,
        allow_private_networks=True,
        claim_idle_ms=400,
        poll_ms=100,
        max_deliveries=3,
        graceful_timeout_s=5,
    )


@pytest.fixture
def site() -> Iterator[LocalSite]:
    """A local web server for the fetcher's tests (tests/integration/localsite.py)."""
    s = LocalSite()
    httpd = serve(s)
    yield s
    httpd.shutdown()
    httpd.server_close()
