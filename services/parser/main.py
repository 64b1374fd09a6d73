"""parser: reads fetched pages, extracts text and metadata in worker processes, emits them."""

import asyncio
import dataclasses
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from faststream import FastStream

from services.parser.extract import extract_article
from shared.broker import Stage
from shared.errors import PermanentError
from shared.messages import ArticleFetched, ArticleParsed
from shared.settings import Settings
from shared.streams import FETCHED, PARSED

logger = logging.getLogger("newsflow.parser")


def create_app(settings: Settings) -> FastStream:
    stage = Stage("parser", settings)
    # Extraction is CPU-bound: in other processes it never blocks this replica's event loop,
    # which keeps reading, acknowledging and publishing meanwhile.
    pool = ProcessPoolExecutor(
        settings.parse_workers, mp_context=multiprocessing.get_context("spawn")
    )
    stage.app.after_shutdown(lambda: pool.shutdown(cancel_futures=True))

    @stage.consume(FETCHED, max_workers=settings.parse_workers)
    @stage.publishes(PARSED)
    async def on_article_fetched(event: ArticleFetched) -> ArticleParsed:
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(pool, extract_article, event.html, event.final_url or event.url)
        try:
            extraction = await asyncio.wait_for(work, settings.parse_timeout_s)
        except TimeoutError:
            raise PermanentError(
                f"extraction took longer than {settings.parse_timeout_s:.0f} s"
            ) from None
        parsed = ArticleParsed(
            id=event.id, url=event.url, final_url=event.final_url,
            trace=event.traced("parsed"), **dataclasses.asdict(extraction),
        )
        logger.info("parsed %s %r %d words %s", parsed.id, parsed.title, parsed.words,
                    parsed.language or "und")
        return parsed

    return stage.app
