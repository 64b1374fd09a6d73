"""indexer: reads enriched articles, upserts them into the search store, emits "indexed"."""

import logging

import asyncpg
from faststream.asgi import AsgiFastStream

from shared import store
from shared.broker import Stage
from shared.messages import ArticleEnriched, ArticleIndexed
from shared.reach import when_reachable, where
from shared.settings import Settings
from shared.streams import ENRICHED, INDEXED

logger = logging.getLogger("newsflow.indexer")


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("indexer", settings)
    pools: list[asyncpg.Pool] = []

    @stage.app.on_startup
    async def open_store() -> None:
        pools.append(await when_reachable(
            lambda: store.connect(settings.database_url),
            f"PostgreSQL at {where(settings.database_url)}", settings.startup_wait_s))

    @stage.app.after_shutdown
    async def close_store() -> None:
        for pool in pools:
            await pool.close()

    # Indexing one article costs about what reading and acknowledging it does: new entries
    # are taken in batches (one transaction, one MULTI). A batch that fails is taken again
    # entry by entry, where each gets its own retries and dead letter.
    @stage.handle_batches(ENRICHED, to=INDEXED, max_records=settings.index_batch)
    async def on_articles_enriched(events: list[ArticleEnriched]) -> list[ArticleIndexed]:
        stamped = [e.model_copy(update={"trace": e.traced("indexed")}) for e in events]
        await store.upsert_articles(pools[0], stamped)
        for e in stamped:
            logger.info("indexed %s %r", e.id, e.title, extra={"article_id": e.id})
        return [ArticleIndexed(id=e.id, url=e.url, title=e.title, trace=e.trace)
                for e in stamped]

    return stage.app
