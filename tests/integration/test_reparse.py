"""Kept pages and `newsflow reparse`, on a real PostgreSQL and Redis."""

import json
import os
import zlib
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from services.cli import reparse
from services.parser.archive import PageArchive
from shared import pages
from shared.messages import ArticleFetched
from shared.settings import Settings
from shared.streams import DATA_FIELD, FETCHED
from tests.integration.test_warc import cli
from tests.servers import PostgresServer, RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis

NOW = datetime.now(UTC)
HTML = "<html><body><article><h1>Budget talks</h1><p>{}</p></article></body></html>"


def fetched(n: int, days_ago: float = 0) -> ArticleFetched:
    return ArticleFetched(id=f"p{n}", url=f"https://example.com/{n}", html=HTML.format(n) * 20,
                          fetched_at=NOW - timedelta(days=days_ago))


@pytest.fixture
async def kept(db: asyncpg.Pool) -> asyncpg.Pool:
    await db.execute("TRUNCATE pages")
    return db


async def test_pages_are_kept_compressed_and_read_back(kept: asyncpg.Pool) -> None:
    for n in range(3):
        await pages.keep_page(kept, fetched(n, days_ago=n * 10))
    stored = await kept.fetchval("SELECT html FROM pages WHERE id = 'p0'")
    assert zlib.decompress(stored).decode() == fetched(0).html
    assert len(stored) < len(fetched(0).html) / 5
    read = [p async for batch in pages.kept_pages(kept, pages.Selection(), batch=2)
            for p in batch]
    assert [(p.id, p.url, p.html) for p in read] == [
        (f.id, f.url, f.html) for f in map(fetched, range(3))]
    since = pages.Selection(since=(NOW - timedelta(days=15)).date())
    assert await pages.count_kept(kept, since) == 2
    assert await pages.count_kept(kept, pages.Selection(ids=("p2", "nope"))) == 1
    assert await pages.count_kept(kept, pages.Selection(), after="p0") == 2
    # A re-parsed page (its first fetch time) never replaces a newer fetch.
    await pages.keep_page(kept, fetched(0, days_ago=30))
    first = await kept.fetchval("SELECT fetched_at FROM pages WHERE id = 'p0'")
    assert first == fetched(0).fetched_at
    assert await pages.drop_expired(kept, 15) == 1
    assert await pages.count_kept(kept, pages.Selection()) == 2


async def test_the_parser_keeps_pages_only_when_asked(postgres_server: PostgresServer,
                                                     kept: asyncpg.Pool) -> None:
    for days, want in ((0, 0), (7, 1)):
        archive = PageArchive(Settings(database_url=postgres_server.url, keep_pages_days=days))
        await archive.open()
        try:
            await archive.keep(fetched(1))
        finally:
            await archive.close()
        assert await pages.count_kept(kept, pages.Selection()) == want


async def test_reparse_publishes_kept_pages_and_resumes(kept: asyncpg.Pool,
                                                       redis_client: "Redis[bytes]") -> None:
    for n in range(5):
        await pages.keep_page(kept, fetched(n))
    selection = pages.Selection()
    # A run that stopped after p1: the next run starts at p2.
    await redis_client.set("newsflow:reparse:cursor:all", "p1")
    assert await reparse.reparse(redis_client, kept, selection) == 3
    entries = [ArticleFetched.model_validate_json(f[DATA_FIELD.encode()])
               for _, f in await redis_client.xrange(FETCHED.name)]
    assert [e.id for e in entries] == ["p2", "p3", "p4"]
    assert entries[0].html == fetched(2).html and entries[0].url == "https://example.com/2"
    assert await redis_client.exists("newsflow:reparse:cursor:all") == 0  # done: no cursor left
    assert await reparse.reparse(redis_client, kept, selection) == 5  # a new run: all again
    only = pages.Selection(ids=("p3",))
    assert await reparse.reparse(redis_client, kept, only, restart=True) == 1


async def test_reparse_from_the_command_line(kept: asyncpg.Pool, redis_server: RedisServer,
                                             postgres_server: PostgresServer,
                                             redis_client: "Redis[bytes]") -> None:
    for n in range(2):
        await pages.keep_page(kept, fetched(n))
    env = {**os.environ, "REDIS_URL": redis_server.url, "DATABASE_URL": postgres_server.url}
    code, out, err = await cli(env, "reparse", "--all")
    assert code == 0, err
    assert "reparse: 2 pages sent to the parser again" in out
    code, out, err = await cli(env, "reparse", "--since", date.today().isoformat(), "p1")
    assert code == 2 and "one of them" in err
    code, out, err = await cli(env, "reparse", "p1")
    assert code == 0 and "reparse: 1 pages" in out
    ids = [json.loads(f[DATA_FIELD.encode()])["id"] for _, f in
           await redis_client.xrange(FETCHED.name)]
    assert ids == ["p0", "p1", "p1"]
