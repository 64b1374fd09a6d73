"""The fetcher's scheduler (`newsflow run scheduler`): polls registered feeds and sitemaps and
submits their new entries to articles:submitted. Part of the fetcher: it fetches the same way."""

import asyncio
import contextlib

from faststream.asgi import AsgiFastStream

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import make_client
from services.fetcher.poll import FeedPoller
from shared.broker import Stage
from shared.messages import ArticleSubmitted
from shared.settings import Settings
from shared.sources.registry import FeedRegistry
from shared.streams import SUBMITTED


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("scheduler", settings)
    client = make_client(settings)
    submitted = stage.broker.publisher(stream=SUBMITTED.name)

    async def submit(articles: list[ArticleSubmitted]) -> None:
        for article in articles:
            await submitted.publish(article, correlation_id=article.id)

    poller = FeedPoller(
        FeedRegistry(stage.redis), Crawler(client, stage.redis, settings), submit, settings
    )
    tasks: set[asyncio.Task[None]] = set()

    @stage.app.after_startup
    async def start() -> None:
        tasks.add(asyncio.create_task(poller.run()))

    @stage.app.on_shutdown
    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.aclose()

    return stage.app
