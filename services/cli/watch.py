"""`newsflow watch add|list|show|test|remove`: saved searches that deliver new matches."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from services.cli import options
from services.cli.db import with_pool
from services.cli.lazy import lazy_module
from services.cli.words import plural

if TYPE_CHECKING:
    import asyncpg

    from shared import store, watches
    from shared.settings import Settings
else:
    # Loaded at first use, so that every other command starts fast (services/cli/lazy.py).
    asyncpg = lazy_module("asyncpg")
    store = lazy_module("shared.store")
    watches = lazy_module("shared.watches")


def _settings() -> Settings:
    from shared.settings import Settings

    return Settings()

watch_app = typer.Typer(help="Watches: saved searches delivered to a webhook and an Atom feed.",
                        no_args_is_help=True)
T = TypeVar("T")


def _with_watches(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    return with_pool(work, watches.connect)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _describe(watch: watches.Watch) -> str:
    filters = watch.filters.model_dump(mode="json", exclude_none=True)
    words = filters.pop("q", "")
    shown = " ".join([repr(words)] if words else []) + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in filters.items())
    return shown.strip()


@watch_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the watch (unique).")],
    query: options.Query = "",
    language: options.Language = None,
    source: options.Source = None,
    entity: options.Entity = None,
    person: options.Person = None,
    organization: options.Organization = None,
    place: options.Place = None,
    country: options.Country = None,
    credit: options.Credit = None,
    since: options.Day = None,
    until: options.Day = None,
    webhook: Annotated[str | None, typer.Option(help="POST each new match here.")] = None,
    format_: Annotated[str, typer.Option("--format", help="json, or slack ({\"text\": …}).")]
    = "json",
    secret: Annotated[str | None, typer.Option(
        help="The webhook signing secret (16+ characters); generated when not given.")] = None,
    every_copy: Annotated[bool, typer.Option(
        help="Tell of every copy of a story, not only the first that matches.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Save a watch. Its words and filters are `newsflow search`'s; each new article that
    matches is delivered to the webhook (signed) and listed in the watch's Atom feed."""
    from pydantic import ValidationError

    settings = _settings()
    try:
        spec = watches.WatchSpec.model_validate({
            "name": name, "webhook": webhook, "format": format_, "secret": secret,
            "every_copy": every_copy,
            "filters": {"q": query, "language": language, "source": source, "entity": entity,
                        "person": person, "organization": organization, "place": place,
                        "country": country, "credit": credit,
                        "since": since.date() if since else None,
                        "until": until.date() if until else None}})
    except ValidationError as exc:
        raise _fail(watches.describe_errors(exc)) from None

    async def go(pool: asyncpg.Pool) -> watches.Watch:
        return await watches.create_watch(
            pool, spec, allow_private=settings.allow_private_networks,
            allowed_networks=settings.allowed_networks)

    try:
        watch = _with_watches(go)
    except watches.WatchError as exc:
        raise _fail(str(exc)) from None
    shown = watch.public(settings.public_url)
    if secret is None:
        shown["secret"] = watch.secret
    if as_json:
        typer.echo(json.dumps(shown, ensure_ascii=False))
        return
    typer.echo(f"added {watch.name} ({watch.id}): {_describe(watch)}")
    typer.echo(f"feed: {shown['feed_url']}")
    if watch.webhook:
        typer.echo(f"webhook: {watch.webhook} ({watch.format})")
    if secret is None:
        typer.echo(f"secret: {watch.secret}  (shown once: signs X-Newsflow-Signature)")


@watch_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every watch, with its matches in the last day and week."""
    settings = _settings()

    async def go(pool: asyncpg.Pool) -> tuple[list[watches.Watch], dict[str, dict[str, int]]]:
        return await watches.list_watches(pool), await watches.match_counts(pool)

    found, counts = _with_watches(go)
    zero = {"day": 0, "week": 0}
    if as_json:
        typer.echo(json.dumps([w.public(settings.public_url, counts.get(w.id, zero))
                               for w in found], ensure_ascii=False))
        return
    for w in found:
        c = counts.get(w.id, zero)
        typer.echo(f"{w.name}  {w.id}  {c['day']} today, {c['week']} this week  "
                   f"{_describe(w)}  -> {w.webhook or 'feed only'}")


@watch_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The watch's name or id.")],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One watch and its most recent matches."""
    settings = _settings()

    async def go(pool: asyncpg.Pool) -> tuple[watches.Watch | None, list[Any]]:
        watch = await watches.get_watch(pool, name)
        if watch is None:
            return None, []
        return watch, await watches.recent_matches(pool, watch.id, limit)

    watch, matches = _with_watches(go)
    if watch is None:
        raise _fail(f"no watch {name!r}", 1)
    if as_json:
        shown = watch.public(settings.public_url)
        shown["recent"] = [m.model_dump(mode="json") for m in matches]
        typer.echo(json.dumps(shown, ensure_ascii=False))
        return
    typer.echo(f"{watch.name} ({watch.id}): {_describe(watch)}")
    feed = watch.public(settings.public_url)["feed_url"]
    typer.echo(f"webhook: {watch.webhook or '-'}  feed: {feed}")
    for m in matches:
        day = m.published.date().isoformat() if m.published else "----------"
        typer.echo(f"{m.matched_at:%Y-%m-%d %H:%M}  {m.article_id}  {day}  {m.source or '-'}  "
                   f"{m.title}")


@watch_app.command("test")
def test(
    name: Annotated[str, typer.Argument(help="The watch's name or id.")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """What the watch would have matched in the archive (newest first)."""

    async def go(pool: asyncpg.Pool) -> tuple[watches.Watch | None, store.SearchResults | None]:
        watch = await watches.get_watch(pool, name)
        if watch is None:
            return None, None
        return watch, await store.search(pool, watches.archive_query(watch, limit))

    watch, results = _with_watches(go)
    if watch is None or results is None:
        raise _fail(f"no watch {name!r}", 1)
    about = "about " if results.total_is_estimate else ""
    typer.echo(f"{about}{plural(results.total, 'story', 'stories')} in the archive "
               f"({about}{plural(results.total_articles, 'article', 'articles')})")
    for hit in results.hits:
        day = hit.published.date().isoformat() if hit.published else "----------"
        typer.echo(f"{hit.id}  {day}  {hit.source or '-'}  [{hit.language}]  {hit.title}")


@watch_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The watch's name or id.")]) -> None:
    """Delete a watch and its record of matches."""
    if not _with_watches(lambda pool: watches.remove_watch(pool, name)):
        raise _fail(f"no watch {name!r}", 1)
    typer.echo(f"removed {name}")
