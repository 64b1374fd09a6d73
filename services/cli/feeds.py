"""`newsflow feeds add|list|remove` and `publish --feed/--sitemap`: feeds and sitemaps in."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared.messages import ArticleSubmitted
    from shared.settings import Settings
    from shared.sources.expand import Expansion
    from shared.sources.registry import FeedRegistry

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

    from shared.sources.registry import FeedRegistry

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
    since: Annotated[str, typer.Option(
        help="Submit only entries changed since: a date (2025-01-31) or an age (2d).")] = "",
) -> None:
    """Register a feed (or sitemap); the scheduler polls it at once, then every --every."""
    url = _checked_url(url)
    every_s = parse_every(every)
    parse_since(since)

    async def go() -> None:
        client, registry = await _with_registry(_settings())
        try:
            await registry.add(url, every_s, since.strip())
        finally:
            await client.aclose()

    asyncio.run(go())
    typer.echo(f"added {url} every {every_s} s" + (f" since {since.strip()}" if since else ""))


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
            if state.get("failed", "0") != "0":
                last += f", {state['failed']} files failed"
            if state.get("error"):
                last += f", error: {state['error']}"
            due = "now" if (feed.next_due or 0) <= time.time() else _ago(feed.next_due or 0)
            since = f"  since {feed.since}" if feed.since else ""
            typer.echo(f"{feed.url}  every {feed.every_s} s{since}  next {due}  {last}")

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


class SourcesRead(NamedTuple):
    """What `publish --feed/--sitemap/--site` found: the articles, and what went wrong."""

    articles: list[ArticleSubmitted]
    expansion: Expansion


def parse_since(text: str | None) -> datetime | None:
    """--since: a date, a date and time, or an age (36h, 2d); None when not given."""
    from shared.sources.expand import since_cutoff

    try:
        return since_cutoff(text or "")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def expand_sources(
    settings: Settings, sources: list[str], sites: list[str], since: datetime | None,
    refresh: bool,
) -> SourcesRead:
    """The articles that `publish --feed/--sitemap/--site` submits: every URL the feeds,
    sitemaps and sites list, once by article id, fetched through the fetcher's guarded and
    polite fetch. A file that fails is reported in the expansion; the rest is still read."""

    # Imported here: only these commands fetch, and they ask the fetcher to (its guarded,
    # polite fetch); the rest of the CLI does not load it.
    import redis

    from services.fetcher.sources import read_sources
    from shared.messages import ArticleSubmitted

    try:
        expansion = asyncio.run(read_sources(settings, sources, sites, since))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # The fetch's politeness (per-host slots, robots.txt cache) lives in Redis.
        typer.echo(f"error: cannot reach Redis at {settings.redis_url} (REDIS_URL): {exc}",
                   err=True)
        raise typer.Exit(1) from None
    articles = [ArticleSubmitted(url=u, refresh=refresh, source="feed") for u in expansion.urls]
    return SourcesRead(articles, expansion)


def report(expansion: Expansion) -> None:
    """Say on stderr what the sources gave and what of them failed or was left out."""
    for failure in expansion.failures:
        typer.echo(f"error: {failure.reason}", err=True)
    for warning in expansion.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"sources: {expansion.summary()}", err=True)
