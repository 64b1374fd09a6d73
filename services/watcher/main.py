"""watcher: reads indexed articles, emits one "matched" event per (watch, article), and delivers
each match to its watch's webhook (the Atom feeds are served by the API)."""

import logging
from dataclasses import dataclass, field

import httpx
from faststream.asgi import AsgiFastStream
from redis.asyncio.client import Pipeline

from services.watcher import deliver
from services.watcher.match import Matcher
from shared import watches
from shared.broker import Emit, Stage
from shared.messages import ArticleIndexed, WatchMatched
from shared.reach import when_reachable, where
from shared.settings import Settings
from shared.streams import DATA_FIELD, INDEXED, MATCHED

logger = logging.getLogger("newsflow.watcher")


@dataclass
class Opened:
    """What the watcher opens at start and closes at shutdown."""

    matcher: Matcher | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)


def create_app(settings: Settings) -> AsgiFastStream:
    stage = Stage("watcher", settings)
    opened = Opened()

    @stage.app.on_startup
    async def open_store() -> None:
        pool = await when_reachable(lambda: watches.connect(settings.database_url),
                                    f"PostgreSQL at {where(settings.database_url)}",
                                    settings.startup_wait_s)
        opened.matcher = Matcher(pool)
        opened.clients.append(deliver.make_client(settings))

    @stage.app.after_shutdown
    async def close() -> None:
        for client in opened.clients:
            await client.aclose()
        if opened.matcher is not None:
            await opened.matcher.pool.close()

    @stage.handle(INDEXED, to=MATCHED)
    async def on_article_indexed(event: ArticleIndexed) -> Emit | None:
        assert opened.matcher is not None  # noqa: S101 -- set at startup
        found = await opened.matcher.matches(event)
        if not found:
            return None
        names = sorted(m.watch_name for m in found)
        # One line per article, whatever the number of watches it matched.
        logger.info("matched %s %r %d %s: %s%s", event.id, found[0].title, len(found),
                    "watch" if len(found) == 1 else "watches", ", ".join(names[:5]),
                    ", …" if len(names) > 5 else "", extra={"article_id": event.id})
        first, *rest = found

        def the_others(tx: Pipeline) -> None:
            # Every match goes out with the entry's acknowledgement, in the same MULTI.
            for match in rest:
                tx.xadd(MATCHED.name, {DATA_FIELD: match.model_dump_json()})

        return Emit(MATCHED, first, also=the_others if rest else None)

    @stage.handle(MATCHED, concurrency=settings.webhook_concurrency)
    async def on_watch_matched(event: WatchMatched) -> None:
        assert opened.matcher is not None  # noqa: S101 -- set at startup
        watch = await opened.matcher.watch(event.watch_id)
        if watch is None:
            logger.info("dropped %s: watch %s was removed", event.key, event.watch_id,
                        extra={"article_id": event.id})
            return
        if watch.webhook:
            await deliver.deliver(opened.clients[0], event, watch, settings)

    return stage.app
