"""`newsflow reparse`: kept pages through parser → enricher → indexer again, without fetching.

Each page goes to `articles:fetched` as the fetcher emitted it, so it has the pipeline's delivery
guarantees (at least once; the index upserts by id). Pages go in id order, and the id of the last
one published is kept in Redis: a run cut short resumes after it.
"""

import hashlib
from collections.abc import Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from shared import keys, pages
from shared.messages import ArticleFetched
from shared.streams import DATA_FIELD, FETCHED

# Pages read from the store and published (one Redis round trip) at once.
BATCH = 100


def selection_key(selection: pages.Selection) -> str:
    """The name of a selection in the resume cursor's key."""
    if selection.ids:
        digest = hashlib.sha256("\n".join(sorted(selection.ids)).encode()).hexdigest()[:16]
        return f"ids:{digest}"
    return f"since:{selection.since.isoformat()}" if selection.since else "all"


async def publish_fetched(client: aioredis.Redis, batch: list[ArticleFetched]) -> None:
    """Add the pages to `articles:fetched` in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for page in batch:
            pipe.xadd(FETCHED.name, {DATA_FIELD: page.model_dump_json(exclude_none=True)})
        await pipe.execute()


async def reparse(client: aioredis.Redis, pool: asyncpg.Pool, selection: pages.Selection,
                  restart: bool = False,
                  progress: Callable[[list[ArticleFetched]], None] = lambda _: None) -> int:
    """Publish the selected kept pages (after the cursor of an earlier run, unless `restart`);
    returns how many were published by this run."""
    cursor = keys.reparse_cursor(selection_key(selection))
    if restart:
        await client.delete(cursor)
    after = await resume_point(client, selection)
    published = 0
    async for batch in pages.kept_pages(pool, selection, after, BATCH):
        await publish_fetched(client, batch)
        # Set after publishing: a crash in between publishes the batch twice, never skips it.
        await client.set(cursor, batch[-1].id)
        published += len(batch)
        progress(batch)
    await client.delete(cursor)
    return published


async def resume_point(client: aioredis.Redis, selection: pages.Selection) -> str:
    """The id after which a run of `selection` resumes ("" when it starts from the beginning)."""
    raw: Any = await client.get(keys.reparse_cursor(selection_key(selection)))
    return raw.decode() if raw else ""
