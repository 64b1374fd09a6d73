"""`newsflow feeds add|list|remove` and `publish --feed/--sitemap`: feeds and sitemaps in."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.lazy import lazy_module

if TYPE_CHECKING:
    import asyncio

    import redis.asyncio as aioredis

    from services.fetcher.fetch import FetchedPage
    from services.fetcher.registry import FeedRegistry
    from shared.messages import ArticleSubmitted
    from shared.settings import Settings
else:
    # The fetcher's modules are heavy; only these commands need them (services/cli/lazy.py).
    asyncio = lazy_module("asyncio")

feeds_app = typer.Typer(help="Feeds and sitemaps the scheduler polls.", no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.I)
MIN_EVERY_S = 60
"""Polling a feed more often than once a minute is not polite."""


def parse_every(text: str) -> int:
    """Seconds in "15m", "2h", "1d", "90s" or "600" (seconds); at least MIN_EVERY_S."""
    match = _EVERY.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not an interval like 15m, 2h or 1d")
    seconds = int(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds < MIN_EVERY_S:
        raise typer.BadParameter(f"{text!r} is under the minimum of {MIN_EVERY_S} s")
    return seconds


def _checked_url(url: str) -> str:
    from shared.messages import ArticleSubmitted

    try:
        return ArticleSubmitted(url=url).url or url
    except ValueError as exc:
        raise typer.BadParameter(f"not an http(s) URL: {url!r}") from exc


async def _with_registry(settings: Settings) -> tuple[aioredis.Redis, FeedRegistry]:
    import redis.asyncio as aioredis

    from services.fetcher.registry import FeedRegistry

    client = aioredis.from_url(settings.redis_url)
    return client, FeedRegistry(client)


def _settings() -> Settings:
    from shared.settings import Settings

    return Settings()


def _ago(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@feeds_app.command("add")
def feeds_add(
    url: Annotated[str, typer.Argument(help="An RSS/Atom feed or a sitemap URL.")],
    every: Annotated[str, typer.Option(help="How often to poll it: 15m, 2h, 1d.")] = "15m",
) -> None:
    """Register a feed (or sitemap); the scheduler polls it at once, then every --every."""
    url = _checked_url(url)
    every_s = parse_every(every)

    async def go() -> None:
        client, registry = await _with_registry(_settings())
        try:
            await registry.add(url, every_s)
        finally:
            await client.aclose()

    asyncio.run(go())
    typer.echo(f"added {url} every {every_s} s")


@feeds_app.command("list")
def feeds_list() -> None:
    """The registered feeds: interval, next poll, and how the last poll went."""

    async def go() -> None:
        client, registry = await _with_registry(_settings())
        try:
            feeds = await registry.feeds()
        finally:
            await client.aclose()
        if not feeds:
            typer.echo("no feeds (add one with: newsflow feeds add URL --every 15m)")
        for feed in feeds:
            state = feed.state
            last = (f"last {_ago(float(state['polled_at']))} HTTP {state.get('status') or '-'}, "
                    f"{state.get('new', '0')} new" if state.get("polled_at") else "not polled yet")
            if state.get("error"):
                last += f", error: {state['error']}"
            due = "now" if (feed.next_due or 0) <= time.time() else _ago(feed.next_due or 0)
            typer.echo(f"{feed.url}  every {feed.every_s} s  next {due}  {last}")

    asyncio.run(go())


@feeds_app.command("remove")
def feeds_remove(url: Annotated[str, typer.Argument(help="A registered feed URL.")]) -> None:
    """Stop polling a feed and forget what was seen in it."""

    async def go() -> bool:
        client, registry = await _with_registry(_settings())
        try:
            return await registry.remove(url)
        finally:
            await client.aclose()

    if not asyncio.run(go()):
        typer.echo(f"error: no feed {url}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {url}")


class SourceFailed(Exception):
    """A feed or sitemap given to `publish` could not be read (the message says why)."""


def expand_sources(
    settings: Settings, feeds: list[str], sitemaps: list[str], refresh: bool
) -> list[ArticleSubmitted]:
    """The articles that `publish --feed/--sitemap` submits: every URL the feeds and sitemaps
    list, once, fetched through the fetcher's guarded and polite fetch."""
    import redis.asyncio as aioredis

    from services.fetcher.crawl import Crawler
    from services.fetcher.fetch import XML, FetchError, make_client
    from services.fetcher.politeness import HostBusy
    from services.fetcher.sources import SourceError, expand_feed, expand_sitemap
    from shared.messages import ArticleSubmitted

    async def go() -> list[str]:
        redis = aioredis.from_url(settings.redis_url)
        http = make_client(settings)
        crawler = Crawler(http, redis, settings)

        async def fetch(url: str) -> FetchedPage:
            return await crawler.fetch(url, kind=XML, key="cli")

        found: dict[str, None] = {}
        try:
            for url in feeds:
                found.update(dict.fromkeys(
                    await expand_feed(fetch, url, settings.max_source_bytes)))
            for url in sitemaps:
                found.update(dict.fromkeys(await expand_sitemap(
                    fetch, url, settings.max_source_bytes, settings.max_sitemaps)))
        except (FetchError, HostBusy, SourceError) as exc:
            raise SourceFailed(str(exc)) from exc
        finally:
            await http.aclose()
            await redis.aclose()
        return list(found)

    return [ArticleSubmitted(url=u, refresh=refresh, source="feed") for u in asyncio.run(go())]
