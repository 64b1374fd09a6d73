"""The `newsflow` command: run a service, publish articles, search, inspect the pipeline."""

import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import redis
import redis.asyncio as aioredis
import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from services.cli import feeds, pipeline
from shared import store
from shared.logging import setup_logging
from shared.messages import ArticleSubmitted
from shared.reach import where
from shared.settings import Settings

app = typer.Typer(help="newsflow: fetch, parse, enrich and index news articles.",
                  no_args_is_help=True, add_completion=False)
dead_app = typer.Typer(help="Inspect and re-drive dead letters.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")
app.add_typer(feeds.feeds_app, name="feeds")

# Each runnable service and the module whose create_app() builds it.
SERVICES = {
    "fetcher": "services.fetcher.main",
    "scheduler": "services.fetcher.scheduler",
    "parser": "services.parser.main",
    "enricher": "services.enricher.main",
    "indexer": "services.indexer.main",
    "api": "services.api.main",
}
T = TypeVar("T")


def _redis(settings: Settings) -> aioredis.Redis:
    return aioredis.from_url(settings.redis_url)


def _with_redis(work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    settings = Settings()

    async def go() -> T:
        client = _redis(settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        typer.echo(f"error: cannot reach Redis at {settings.redis_url} (REDIS_URL): {exc}",
                   err=True)
        raise typer.Exit(1) from None


def _with_store(work: Callable[[Any], Awaitable[T]]) -> T:
    settings = Settings()

    async def go() -> T:
        pool = await store.connect(settings.database_url, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    except (OSError, asyncpg.PostgresError) as exc:
        typer.echo(f"error: cannot reach the search store at {where(settings.database_url)} "
                   f"(DATABASE_URL): {exc}", err=True)
        raise typer.Exit(1) from None


def _json(value: Any) -> str:
    return json.dumps(value, default=_jsonable, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON: {type(value).__name__}")


@app.command()
def run(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")]) -> None:
    """Run one service in the foreground (what each compose service does)."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    settings = Settings()
    setup_logging(service, settings.log_level, settings.log_format)
    module = importlib.import_module(SERVICES[service])
    # The API serves search; every stage serves /health and /metrics beside its work.
    port = settings.api_port if service == "api" else settings.metrics_port
    uvicorn.run(module.create_app(settings), host=settings.api_host, port=port, log_config=None)


def _articles_from_lines(lines: list[str], refresh: bool) -> tuple[list[ArticleSubmitted], int]:
    """The articles a list of URLs names (blank lines and # comments skipped), and how many
    lines were bad: each is reported, and does not stop the others."""
    articles, bad = [], 0
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                articles.append(ArticleSubmitted(url=line.strip(), refresh=refresh, source="cli"))
            except ValidationError as exc:
                bad += 1
                typer.echo(f"error: line {number}: {line.strip()!r}: {exc.errors()[0]['msg']}",
                           err=True)
    return articles, bad


@app.command()
def publish(
    urls: Annotated[list[str] | None, typer.Argument(help="Article URLs.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f",
                                              help="A file of URLs, one a line.")] = None,
    html: Annotated[Path | None, typer.Option(help="A saved page to ingest as is.")] = None,
    url: Annotated[str | None, typer.Option(help="With --html: the page's URL.")] = None,
    refresh: Annotated[bool, typer.Option(help="Fetch again even if seen before.")] = False,
    feed: Annotated[list[str] | None, typer.Option(
        help="An RSS/Atom feed: submit every article it lists.")] = None,
    sitemap: Annotated[list[str] | None, typer.Option(
        help="A sitemap or sitemap index: submit every page it lists.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until every article is indexed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 120.0,
) -> None:
    """Submit articles: URLs, a file of URLs, or raw HTML. With --wait, exit 0 only when every
    article was indexed (non-zero with the reason when any ended in the dead letters)."""
    try:
        lines = [*(urls or []), *(file.read_text().splitlines() if file else [])]
        page = html.read_text(errors="replace") if html else None
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    articles, bad = _articles_from_lines(lines, refresh)
    if page is not None:
        try:
            articles.append(ArticleSubmitted(url=url, html=page, refresh=refresh, source="cli"))
        except ValueError as exc:
            typer.echo(f"error: --html: {exc}", err=True)
            raise typer.Exit(2) from None
    if feed or sitemap:
        try:
            listed = feeds.expand_sources(Settings(), feed or [], sitemap or [], refresh)
        except feeds.SourceFailed as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        known = {a.id for a in articles}
        articles += [a for a in listed if a.id not in known]
    if not articles:
        typer.echo("error: nothing to publish (give URLs, --file, --html, --feed or --sitemap)",
                   err=True)
        raise typer.Exit(2)

    # A progress bar on a terminal, for more than a handful of articles.
    show = len(articles) > 5 and sys.stderr.isatty()

    async def go(client: aioredis.Redis) -> pipeline.Outcome | None:
        start = await pipeline.wait_start(client)
        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(),
                      console=Console(stderr=True), disable=not show, transient=True) as bar:
            task = bar.add_task("publishing", total=len(articles))
            for chunk in range(0, len(articles), 1000):
                await pipeline.publish(client, articles[chunk:chunk + 1000])
                bar.advance(task, len(articles[chunk:chunk + 1000]))
            for article in articles:
                typer.echo(f"submitted {article.id} {article.url or '(html)'}")
            if not wait:
                return None
            task = bar.add_task("indexed", total=len(articles))
            return await pipeline.wait_for(client, {a.id for a in articles}, start, timeout,
                                           progress=lambda *_: bar.advance(task))

    outcome = _with_redis(go)
    if outcome is None:
        if bad:
            raise typer.Exit(2)
        return
    for article_id, reason in sorted(outcome.dead.items()):
        typer.echo(f"dead {article_id}: {reason}", err=True)
    for article_id in sorted(outcome.missing):
        typer.echo(f"timeout {article_id}: not indexed after {timeout:.0f} s", err=True)
    typer.echo(f"indexed {len(outcome.indexed)}/{len(articles)}")
    if outcome.dead or outcome.missing or bad:
        raise typer.Exit(1)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help='Words, "phrases", -exclusions, OR.')] = "",
    language: Annotated[str | None, typer.Option(help="ISO 639-1 code, e.g. en.")] = None,
    source: Annotated[str | None, typer.Option(help="Site host, e.g. example.com.")] = None,
    entity: Annotated[str | None, typer.Option(help="A person, organisation or place.")] = None,
    person: Annotated[str | None, typer.Option(help="A person named in the article.")] = None,
    organization: Annotated[str | None, typer.Option(help="An organisation named.")] = None,
    place: Annotated[str | None, typer.Option(help="A place named in the article.")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166 code, e.g. IR.")] = None,
    since: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    until: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    has_duplicates: Annotated[bool | None, typer.Option(
        "--has-duplicates/--no-duplicates",
        help="Only stories published more than once / only once.")] = None,
    sort: Annotated[str, typer.Option(help="relevance, date (newest) or oldest.")] = "relevance",
    recency: Annotated[float, typer.Option(help="Recency boost for relevance (0: off).")] = 1.0,
    collapse: Annotated[bool, typer.Option(help="Fold duplicates under their story.")] = True,
    facets: Annotated[bool, typer.Option(help="Also count facets.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    offset: Annotated[int, typer.Option(min=0, help=(
        f"First pages only (up to {store.MAX_OFFSET:,}); deeper, use --after."))] = 0,
    after: Annotated[str | None, typer.Option(
        help="Continue after this cursor (the `next:` a previous page printed).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search what was indexed."""
    import html

    from pydantic import ValidationError

    try:
        q = store.SearchQuery.model_validate({
            "q": query, "language": language, "source": source, "entity": entity,
            "person": person, "organization": organization, "place": place, "country": country,
            "since": since.date() if since else None, "until": until.date() if until else None,
            "has_duplicates": has_duplicates, "sort": sort, "recency": recency,
            "collapse": collapse, "facets": facets, "limit": limit, "offset": offset,
            "after": after,
        })
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "query"
            typer.echo(f"error: {where}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
    bound = Settings().search_bound
    results: store.SearchResults = _with_store(lambda pool: store.search(pool, q, bound=bound))
    if as_json:
        typer.echo(results.model_dump_json())
        return
    about = "about " if results.total_is_estimate else ""
    typer.echo(f"{about}{results.total:,} found ({about}{results.total_articles:,} articles)")
    for hit in results.hits:
        day = hit.published.date().isoformat() if hit.published else "----------"
        typer.echo(f"{hit.id}  {day}  {hit.source or '-'}  [{hit.language}]  {hit.title}")
        snippet = hit.snippet.replace("<mark>", "[").replace("</mark>", "]")
        typer.echo(f"    {html.unescape(snippet)}")
        if hit.similar:
            typer.echo(f"    {len(hit.similar)} similar: "
                       + ", ".join(f"{s.id} {s.source or '-'}" for s in hit.similar))
    if results.facets:
        if results.facets.sample:
            typer.echo(f"facets over the newest {results.facets.sample:,} matching articles:")
        for name, values in results.facets.model_dump(exclude={"sample"}).items():
            if values and name != "days":
                typer.echo(f"{name}: " + ", ".join(f"{v['value']} ({v['count']})"
                                                   for v in values))
    if results.next:
        typer.echo(f"next: {results.next}  (more with --after {results.next})")


@app.command()
def get(
    article_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One stored article, whole."""
    article = _with_store(lambda pool: store.get_article(pool, article_id))
    if article is None:
        typer.echo(f"error: no article {article_id}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(_json(article))
        return
    typer.echo(article_header(article))
    typer.echo(article["text"])


def article_header(article: dict[str, Any]) -> str:
    """The lines above an article's text: title, site and authors, URL, date language countries."""
    credits = " · ".join(c for c in (article.get("site_name"), ", ".join(article["authors"])) if c)
    facts = (f"{article['published'] or '-'}  {article['language'] or '-'}  "
             f"{', '.join(article['countries']) or '-'}")
    lines = (article["title"], credits, article["url"], facts)
    return "\n".join(line for line in lines if line) + "\n"


@app.command()
def export() -> None:
    """Every indexed article as JSON lines, on standard output."""

    async def go(pool: Any) -> None:
        async for article in store.export_articles(pool):
            sys.stdout.write(_json(article) + "\n")

    _with_store(go)


@app.command()
def status() -> None:
    """Per stream: length; per stage: consumers, pending, lag, oldest pending; dead letters."""
    rows = _with_redis(pipeline.status)
    typer.echo(f"{'stream':<20} {'length':>7} {'group':<9} {'consumers':>9} {'pending':>7} "
               f"{'lag':>6} {'oldest pending':>15}")
    for r in rows:
        oldest = f"{r.oldest_pending_s:.0f} s" if r.oldest_pending_s is not None else "-"
        lag = "-" if r.lag is None else str(r.lag)
        typer.echo(f"{r.stream:<20} {r.length:>7} {r.group or '-':<9} {r.consumers:>9} "
                   f"{r.pending:>7} {lag:>6} {oldest:>15}")


@dead_app.command("list")
def dead_list(count: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """The newest dead letters with their reasons."""
    for entry_id, failed in _with_redis(lambda c: pipeline.dead_letters(c, count)):
        typer.echo(f"{entry_id}  {failed.group:<8}  {failed.id or '-'}  {failed.reason}")


@dead_app.command("show")
def dead_show(entry_id: str) -> None:
    """One dead letter in full, as JSON."""
    letters = _with_redis(lambda c: pipeline.dead_letters(c, 10_000))
    for found_id, failed in letters:
        if found_id == entry_id:
            typer.echo(failed.model_dump_json(indent=2))
            return
    typer.echo(f"error: no dead letter {entry_id}", err=True)
    raise typer.Exit(1)


@dead_app.command("retry")
def dead_retry(
    entry_ids: Annotated[list[str] | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Put dead letters back where they failed, to be processed again."""
    if not entry_ids and not all_:
        typer.echo("error: name dead letter ids, or --all", err=True)
        raise typer.Exit(2)
    try:
        count = _with_redis(lambda c: pipeline.retry_dead(c, None if all_ else entry_ids))
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"retried {count}")


@dead_app.command("purge")
def dead_purge() -> None:
    """Forget every dead letter."""
    typer.echo(f"purged {_with_redis(pipeline.purge_dead)}")


@app.command()
def asyncapi(
    out: Annotated[Path | None, typer.Option(help="Write it here instead of printing it.")] = None,
) -> None:
    """The AsyncAPI document of every stream, generated from the services (docs/asyncapi.json)."""
    from services.cli.asyncapi import asyncapi_document

    text = json.dumps(asyncapi_document(Settings()), indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def main() -> None:
    app()
