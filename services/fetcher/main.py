"""fetcher: reads submitted articles, fetches their pages (or takes the HTML given), emits them."""

import logging

from faststream import FastStream

from services.fetcher.fetch import fetch_page, make_client
from shared.broker import Stage
from shared.messages import ArticleFetched, ArticleSubmitted
from shared.settings import Settings
from shared.streams import FETCHED, SUBMITTED

logger = logging.getLogger("newsflow.fetcher")


def create_app(settings: Settings) -> FastStream:
    stage = Stage("fetcher", settings)
    client = make_client(settings)
    stage.app.after_shutdown(client.aclose)

    @stage.consume(SUBMITTED, max_workers=settings.fetch_concurrency)
    @stage.publishes(FETCHED)
    async def on_article_submitted(event: ArticleSubmitted) -> ArticleFetched:
        if event.html is not None:
            logger.info("received %s %s %d KB of HTML", event.id, event.url or "(no url)",
                        len(event.html.encode()) // 1024)
            return ArticleFetched(
                id=event.id, url=event.url, final_url=event.url, html=event.html,
                size_bytes=len(event.html.encode()), trace=event.traced("fetched"),
            )
        # ArticleSubmitted guarantees a url when there is no html.
        page = await fetch_page(client, event.url or "", settings)
        logger.info("fetched %s %s %d %d KB %.0f ms", event.id, page.final_url, page.status,
                    page.size_bytes // 1024, page.elapsed_ms)
        return ArticleFetched(
            id=event.id, url=event.url, final_url=page.final_url, status=page.status,
            content_type=page.content_type, html=page.html, size_bytes=page.size_bytes,
            elapsed_ms=page.elapsed_ms, trace=event.traced("fetched"),
        )

    return stage.app
