"""indexer: reads enriched articles, upserts them into the search store, emits "indexed"."""

import logging

import asyncpg
from faststream import FastStream

from shared import store
from shared.broker import Stage
from shared.messages import ArticleEnriched, ArticleIndexed
from shared.settings import Settings
from shared.streams import ENRICHED, INDEXED

logger = logging.getLogger("newsflow.indexer")


def create_app(settings: Settings) -> FastStream:
    stage = Stage("indexer", settings)
    pools: list[asyncpg.Pool] = []

    @stage.app.on_startup
    async def open_store() -> None:
        pools.append(await store.connect(settings.database_url))

    @stage.app.after_shutdown
    async def close_store() -> None:
        for pool in pools:
            await pool.close()

    @stage.consume(ENRICHED)
    @stage.publishes(INDEXED)
    async def on_article_enriched(event: ArticleEnriched) -> ArticleIndexed:
        trace = event.traced("indexed")
        await store.upsert_articles(pools[0], [event.model_copy(update={"trace": trace})])
        logger.info("indexed %s %r", event.id, event.title)
        return ArticleIndexed(id=event.id, url=event.url, title=event.title, trace=trace)

    return stage.app
