"""enricher: reads parsed articles, adds language, entities, countries, keywords and the earlier
article it nearly duplicates, and emits them."""

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from faststream.asgi import AsgiFastStream

from services.enricher.duplicates import DuplicateIndex
from services.enricher.enrich import Enricher
from services.enricher.minhash import signature
from shared.broker import Stage
from shared.messages import ArticleEnriched, ArticleParsed
from shared.settings import Settings
from shared.streams import ENRICHED, PARSED

logger = logging.getLogger("newsflow.enricher")
T = TypeVar("T")


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("enricher", settings)
    # One thread owns the models: NLP runs off the event loop, one article at a time.
    nlp_thread = ThreadPoolExecutor(1, thread_name_prefix="nlp")
    enricher: list[Enricher] = []
    duplicates = DuplicateIndex(
        stage.redis, threshold=settings.duplicate_threshold, window_s=settings.duplicate_window_s
    )

    async def in_nlp_thread(work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(nlp_thread, work, *args)

    @stage.app.on_startup
    async def load_models() -> None:
        enricher.append(await in_nlp_thread(Enricher))

    @stage.handle(PARSED, to=ENRICHED)
    async def on_article_parsed(event: ArticleParsed) -> ArticleEnriched:
        found = await in_nlp_thread(enricher[0].enrich, event.title, event.text, event.language)
        duplicate_of = await duplicates.link(event.id, await in_nlp_thread(signature, event.text))
        enriched = ArticleEnriched(
            **(event.model_dump(exclude={"trace"}) | dataclasses.asdict(found)),
            duplicate_of=duplicate_of,
            trace=event.traced("enriched"),
        )
        people = sum(e.type == "person" for e in enriched.entities)
        places = sum(e.type == "place" for e in enriched.entities)
        logger.info("enriched %s %s %d entities (%d people, %d places) countries %s%s",
                    enriched.id, enriched.language, len(enriched.entities), people, places,
                    ",".join(enriched.countries) or "-",
                    f" duplicate of {duplicate_of}" if duplicate_of else "")
        return enriched

    return stage.app
