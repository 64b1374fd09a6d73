"""enricher: reads parsed articles, adds language, entities, countries and keywords, emits them."""

import asyncio
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

from faststream import FastStream

from services.enricher.enrich import Enricher
from shared.broker import Stage
from shared.messages import ArticleEnriched, ArticleParsed
from shared.settings import Settings
from shared.streams import ENRICHED, PARSED

logger = logging.getLogger("newsflow.enricher")


def create_app(settings: Settings) -> FastStream:
    stage = Stage("enricher", settings)
    # One thread owns the models: NLP runs off the event loop, one article at a time.
    nlp_thread = ThreadPoolExecutor(1, thread_name_prefix="nlp")
    enricher: list[Enricher] = []

    @stage.app.on_startup
    async def load_models() -> None:
        enricher.append(await asyncio.get_running_loop().run_in_executor(nlp_thread, Enricher))

    @stage.consume(PARSED)
    @stage.publishes(ENRICHED)
    async def on_article_parsed(event: ArticleParsed) -> ArticleEnriched:
        found = await asyncio.get_running_loop().run_in_executor(
            nlp_thread, enricher[0].enrich, event.title, event.text, event.language
        )
        enriched = ArticleEnriched(
            **(event.model_dump(exclude={"trace"}) | dataclasses.asdict(found)),
            trace=event.traced("enriched"),
        )
        people = sum(e.type == "person" for e in enriched.entities)
        places = sum(e.type == "place" for e in enriched.entities)
        logger.info("enriched %s %s %d entities (%d people, %d places) countries %s",
                    enriched.id, enriched.language, len(enriched.entities), people, places,
                    ",".join(enriched.countries) or "-")
        return enriched

    return stage.app
