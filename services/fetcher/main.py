"""fetcher: reads submitted articles, fetches their pages (or takes the HTML given), emits them."""

from faststream.asgi import AsgiFastStream

from services.fetcher.crawl import Crawler
from services.fetcher.fetch import make_client
from shared.broker import Stage
from shared.messages import ArticleSubmitted
from shared.settings import Settings
from shared.streams import FETCHED, INDEXED, SUBMITTED


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("fetcher", settings)
    client = make_client(settings)
    stage.app.after_shutdown(client.aclose)
    crawler = Crawler(client, stage.redis, settings)
    # One outcome per article, on one of three streams: the page (articles:fetched); "done" for
    # a URL skipped or unchanged (articles:indexed, so `publish --wait` ends); or the article
    # itself, back in the queue, when its host is busy. A FastStream publisher decorator would
    # publish on every stream, and publishes an empty entry for None, so each is explicit.
    publishers = {
        s.name: stage.broker.publisher(stream=s.name) for s in (FETCHED, INDEXED, SUBMITTED)
    }

    @stage.consume(SUBMITTED, max_workers=settings.fetch_concurrency)
    async def on_article_submitted(event: ArticleSubmitted) -> None:
        outcome = await crawler.fetch_article(event)
        await publishers[outcome.stream.name].publish(outcome.event, correlation_id=event.id)
        await crawler.remember(event, outcome)

    return stage.app
