"""indexer: reads enriched articles, upserts them into the search store, emits "indexed"."""

import logging

import asyncpg
from faststream.asgi import AsgiFastStream

from shared import store
from shared.broker import Stage
from shared.messages import ArticleEnriched, ArticleIndexed
from shared.settings import Settings
from shared.streams import ENRICHED, INDEXED

logger = logging.getLogger("newsflow.indexer")


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("indexer", settings)
    pools: list[asyncpg.Pool] = []

    @stage.app.on_startup
    async def open_store() -> None:
        pools.append(await store.connect(settings.database_url))

    @stage.app.after_shutdown
    async def close_store() -> None:
        for pool in pools:
            await pool.close()

    async def index(events: list[ArticleEnriched]) -> list[ArticleIndexed]:
        stamped = [e.model_copy(update={"trace": e.traced("indexed")}) for e in events]
        await store.upsert_articles(pools[0], stamped)
        for e in stamped:
            logger.info("indexed %s %r", e.id, e.title, extra={"article_id": e.id})
        return [ArticleIndexed(id=e.id, url=e.url, title=e.title, trace=e.trace)
                for e in stamped]

    # Indexing one article costs about what reading and acknowledging it does: new entries
    # are taken in batches (one transaction, one XACK). A batch that fails is retried entry
    # by entry by the reclaimer, where each gets its own retries and dead letter.
    @stage.batch_reader(ENRICHED, max_records=settings.index_batch)
    async def on_articles_enriched(events: list[ArticleEnriched]) -> None:
        await stage.publish_many(INDEXED, await index(events))

    @stage.reclaimer(ENRICHED)
    @stage.publishes(INDEXED)
    async def on_article_enriched(event: ArticleEnriched) -> ArticleIndexed:
        [indexed] = await index([event])
        return indexed

    return stage.app
