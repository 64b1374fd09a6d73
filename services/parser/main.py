"""parser: reads fetched pages, extracts text and metadata in worker processes, emits them."""

import dataclasses
import logging

from faststream.asgi import AsgiFastStream

from services.parser.archive import PageArchive
from services.parser.extract import extract_article
from services.parser.workers import WorkerPool
from shared.broker import Stage
from shared.errors import PermanentError
from shared.messages import ArticleFetched, ArticleParsed
from shared.settings import Settings
from shared.streams import FETCHED, PARSED

logger = logging.getLogger("newsflow.parser")


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("parser", settings)
    # Extraction is CPU-bound: in other processes it never blocks this replica's event loop,
    # which keeps reading, acknowledging and publishing meanwhile.
    pool = WorkerPool(settings.parse_workers)
    stage.app.after_shutdown(pool.close)
    archive = PageArchive(settings)
    stage.app.on_startup(archive.open)
    stage.app.after_shutdown(archive.close)

    @stage.handle(FETCHED, to=PARSED, concurrency=settings.parse_workers)
    async def on_article_fetched(event: ArticleFetched) -> ArticleParsed:
        url = event.final_url or event.url
        # Kept before parsing: a page the parser cannot read today may parse after a fix.
        await archive.keep(event)
        try:
            extraction = await pool.run(settings.parse_timeout_s, extract_article, event.html, url)
        except TimeoutError as late:
            raise PermanentError(f"extraction too slow: {late}") from None
        parsed = ArticleParsed(
            id=event.id, url=event.url, final_url=event.final_url,
            trace=event.traced("parsed"), **dataclasses.asdict(extraction),
        )
        logger.info("parsed %s %r %d words %s", parsed.id, parsed.title, parsed.words,
                    parsed.language or "und")
        return parsed

    return stage.app
