"""parser: reads fetched pages, extracts text and metadata in worker processes, emits them."""

import dataclasses
import logging

from faststream.asgi import AsgiFastStream

from services.parser.archive import PageArchive
from services.parser.limits import extract_page
from services.parser.workers import WorkerDied, WorkerPool
from shared import keys
from shared.broker import Stage
from shared.errors import PermanentError, TransientError
from shared.messages import ArticleFetched, ArticleParsed
from shared.settings import Settings
from shared.streams import FETCHED, PARSED

logger = logging.getLogger("newsflow.parser")

# A worker killed once may have been unlucky (the machine's memory, a deploy); killed twice by
# the same page, the page is the cause.
KILLS_TO_GIVE_UP = 2
KILLS_KEPT_S = 86_400


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("parser", settings)
    # Extraction is CPU-bound: in other processes it never blocks this replica's event loop,
    # which keeps reading, acknowledging and publishing meanwhile.
    pool = WorkerPool(settings.parse_workers, memory_mb=settings.parse_memory_mb)
    stage.app.after_shutdown(pool.close)
    archive = PageArchive(settings)
    stage.app.on_startup(archive.open)
    stage.app.after_shutdown(archive.close)

    async def killed(article_id: str, died: WorkerDied) -> PermanentError | TransientError:
        """The error for a page whose worker died: permanent the second time."""
        key = keys.parse_kills(article_id)
        async with stage.redis.pipeline(transaction=True) as tx:
            tx.incr(key)
            tx.expire(key, KILLS_KEPT_S)
            kills, _ = await tx.execute()
        if int(kills) >= KILLS_TO_GIVE_UP:
            return PermanentError(f"the page killed its parse worker {kills} times: {died}")
        return TransientError(f"the page killed its parse worker: {died}")

    @stage.handle(FETCHED, to=PARSED, concurrency=settings.parse_workers)
    async def on_article_fetched(event: ArticleFetched) -> ArticleParsed:
        url = event.final_url or event.url
        # Kept before parsing: a page the parser cannot read today may parse after a fix.
        await archive.keep(event)
        try:
            extraction = await pool.run(settings.parse_timeout_s, extract_page, event.html, url,
                                        settings.parse_max_elements)
        except TimeoutError as late:
            raise PermanentError(f"extraction too slow: {late}") from None
        except WorkerDied as died:
            raise await killed(event.id, died) from None
        parsed = ArticleParsed(
            id=event.id, url=event.url, final_url=event.final_url,
            trace=event.traced("parsed"), **dataclasses.asdict(extraction),
        )
        logger.info("parsed %s %r %d words %s", parsed.id, parsed.title, parsed.words,
                    parsed.language or "und")
        return parsed

    return stage.app
