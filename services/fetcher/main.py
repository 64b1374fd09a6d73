"""fetcher: reads submitted articles, fetches their pages (or takes the HTML given), emits them."""

import asyncio

from faststream.asgi import AsgiFastStream

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import make_client
from shared.broker import Emit, Stage
from shared.messages import ArticleSubmitted
from shared.settings import Settings
from shared.streams import FETCHED, INDEXED, SUBMITTED


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("fetcher", settings)
    client = make_client(settings)
    stage.app.after_shutdown(client.aclose)
    crawler = Crawler(client, stage.redis, settings)
    # Articles parked for their host's Retry-After go back to the queue when it runs out.
    unparking: set[asyncio.Task[None]] = set()

    @stage.app.after_startup
    async def start_unparking() -> None:
        unparking.add(asyncio.create_task(crawler.parking.run()))

    @stage.app.on_shutdown
    async def stop_unparking() -> None:
        for task in unparking:
            task.cancel()

    # One outcome per article, on one of three streams: the page (articles:fetched); "done" for
    # a URL skipped or unchanged (articles:indexed, so `publish --wait` ends); or the article
    # itself, back in the queue, when its host is busy. The fetch is remembered with it. An
    # article parked until its host's Retry-After emits nothing (it is in Redis, acknowledged).
    @stage.handle(SUBMITTED, to=(FETCHED, INDEXED, SUBMITTED),
                  concurrency=settings.fetch_concurrency)
    async def on_article_submitted(event: ArticleSubmitted) -> Emit | None:
        outcome = await crawler.fetch_article(event)
        if outcome is None:
            return None
        return Emit(outcome.stream, outcome.event, also=crawler.remembering(event, outcome))

    return stage.app
