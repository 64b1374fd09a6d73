"""The `newsflow` command: run a service, publish articles, search, inspect the pipeline."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from services.cli import options
from services.cli.db import with_pool
from services.cli.lazy import lazy_module
from services.cli.watch import watch_app
from services.cli.words import plural

if TYPE_CHECKING:
    import asyncio

    import asyncpg
    import redis
    import redis.asyncio as aioredis
    import uvicorn
    from rich.progress import Progress

    from services.cli import feeds, pipeline
    from services.cli import reparse as reparse_io
    from services.cli import warc as warc_io
    from shared import store
    from shared.messages import ArticleSubmitted
    from shared.settings import Settings
else:
    # Loaded at first use: each command needs few of these, and importing them all cost every
    # command about a second of CPU (services/cli/lazy.py).
    asyncio = lazy_module("asyncio")
    asyncpg = lazy_module("asyncpg")
    redis = lazy_module("redis")
    uvicorn = lazy_module("uvicorn")
    feeds = lazy_module("services.cli.feeds")
    pipeline = lazy_module("services.cli.pipeline")
    reparse_io = lazy_module("services.cli.reparse")
    warc_io = lazy_module("services.cli.warc")
    store = lazy_module("shared.store")

app = typer.Typer(help="newsflow: fetch, parse, enrich and index news articles.",
                  no_args_is_help=True, add_completion=False)
dead_app = typer.Typer(help="Inspect and re-drive dead letters.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")
app.add_typer(feeds.feeds_app, name="feeds")
app.add_typer(watch_app, name="watch")

# Each runnable service and the module whose create_app() builds it.
SERVICES = {
    "fetcher": "services.fetcher.main",
    "scheduler": "services.fetcher.scheduler",
    "parser": "services.parser.main",
    "enricher": "services.enricher.main",
    "indexer": "services.indexer.main",
    "watcher": "services.watcher.main",
    "api": "services.api.main",
}
T = TypeVar("T")


@app.callback()
def _find_stack(ctx: typer.Context) -> None:
    # The CLI in another terminal reaches what `newsflow up` runs with no setting: the unset
    # REDIS_URL / DATABASE_URL are taken from the note it leaves in its data folder.
    if ctx.invoked_subcommand != "up":
        import os

        from services.cli.stack import adopt_running_stack

        adopt_running_stack(os.environ)


def _redis(settings: Settings) -> aioredis.Redis:
    import redis.asyncio as aioredis

    return aioredis.from_url(settings.redis_url)


def _with_redis(work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    from shared.settings import Settings

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
    from services.cli.servers import ServerUnavailable, listen
    from shared.logging import setup_logging
    from shared.settings import Settings

    settings = Settings()
    setup_logging(service, settings.log_level, settings.log_format)
    module = importlib.import_module(SERVICES[service])
    # The API serves search; every stage serves /health and /metrics beside its work.
    try:
        if service == "api":
            sock = listen(settings.api_host, settings.api_port, "NEWSFLOW_API_PORT", False)
        else:
            sock = listen(settings.metrics_host, settings.metrics_port, "NEWSFLOW_METRICS_PORT",
                          True)
            # The port it got is the one it announces (newsflow status).
            settings = settings.model_copy(update={"metrics_port": sock.getsockname()[1]})
    except ServerUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    config = uvicorn.Config(module.create_app(settings), log_config=None)
    uvicorn.Server(config).run(sockets=[sock])


@app.command()
def up(
    scale: Annotated[list[str] | None, typer.Option(
        help="Replicas of a service: SERVICE=COUNT (repeat it, or parser=2,enricher=2). "
             "Default: one each, parser and enricher one per two cores (up to 4).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Where Redis and PostgreSQL keep their data (NEWSFLOW_DATA_DIR; "
                           "default ~/.local/share/newsflow, /var/lib/newsflow as root).",
        file_okay=False)] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t",
                                             help="Start each log line with the time.")] = False,
) -> None:
    """Run the whole stack here in the foreground, without Docker (Ctrl-C stops it).

    Starts Redis and PostgreSQL (unless REDIS_URL / DATABASE_URL name servers to use) with
    their data in --data-dir, then every service, each replica supervised, in one log. The
    next `up` carries on from the data; the CLI in another terminal finds the stack."""
    import os

    from services.cli import stack
    from services.cli import up as stack_up
    from services.cli.servers import ServerUnavailable
    from shared.settings import Settings

    names = list(SERVICES)
    try:
        chosen = {**stack_up.default_scale(names, os.cpu_count()),
                  **stack_up.parse_scale(scale or [], names)}
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scale") from None
    folder = stack.data_dir(str(data_dir) if data_dir else Settings().data_dir)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        code = stack_up.up(names, folder, chosen, colour, timestamps)
    except (stack_up.UpError, ServerUnavailable, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _articles_from_lines(lines: list[str], refresh: bool) -> tuple[list[ArticleSubmitted], int]:
    """The articles a list of URLs names (blank lines and # comments skipped), and how many
    lines were bad: each is reported, and does not stop the others."""
    from pydantic import ValidationError

    from shared.messages import ArticleSubmitted

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


def _add_from_sources(articles: list[ArticleSubmitted], sources: list[str], sites: list[str],
                      since: str | None, refresh: bool) -> bool:
    """Add to `articles` what the feeds, sitemaps and sites list (once by id); whether any of
    them failed (reported on stderr). Nothing found at all ends the command."""
    from shared.settings import Settings

    read = feeds.expand_sources(Settings(), sources, sites, feeds.parse_since(since), refresh)
    feeds.report(read.expansion)
    known = {a.id for a in articles}
    articles += [a for a in read.articles if a.id not in known]
    if not articles:
        typer.echo("error: nothing to publish: the feeds and sitemaps listed no article "
                   "URLs (see above)", err=True)
        raise typer.Exit(1)
    return bool(read.expansion.failures)


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
        help="A sitemap, sitemap index or plain-text sitemap: submit every page it lists.")] = None,
    site: Annotated[list[str] | None, typer.Option(
        help="A site: submit the pages of the sitemaps its robots.txt names (else of its "
             "/sitemap.xml).")] = None,
    since: Annotated[str | None, typer.Option(
        help="With --feed/--sitemap/--site: only entries changed since a date (2025-01-31) "
             "or within an age (2d).")] = None,
    warc: Annotated[Path | None, typer.Option(
        help="A WARC file: submit the HTML page of every response in it (not fetched again).")]
        = None,
    wait: Annotated[bool, typer.Option(help="Wait until every article is indexed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 120.0,
) -> None:
    """Submit articles: URLs, a file of URLs, raw HTML, or the pages feeds, sitemaps and sites
    list (a file of them that fails is reported, the rest submitted, and the exit status is 1).
    With --wait, exit 0 only when every article was indexed (non-zero with the reason when any
    ended in the dead letters)."""
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    from shared.messages import ArticleSubmitted

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
    sources = [*(feed or []), *(sitemap or [])]
    sources_failed = bool(sources or site) and _add_from_sources(
        articles, sources, site or [], since, refresh)
    if warc is not None and not warc.is_file():
        typer.echo(f"error: --warc: no file {warc}", err=True)
        raise typer.Exit(2)
    if not articles and warc is None:
        typer.echo("error: nothing to publish (give URLs, --file, --html, --feed, --sitemap, "
                   "--site or --warc)", err=True)
        raise typer.Exit(2)
    submitted = {a.id for a in articles}  # grows as a WARC file is read

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
            if warc is not None:
                await _publish_warc(client, warc, refresh, submitted, bar)
            if not wait:
                return None
            task = bar.add_task("indexed", total=len(submitted))
            return await pipeline.wait_for(client, submitted, start, timeout,
                                           progress=lambda *_: bar.advance(task))

    outcome = _with_redis(go)
    if outcome is None:
        if bad:
            raise typer.Exit(2)
        if sources_failed:
            raise typer.Exit(1)
        return
    for article_id, reason in sorted(outcome.dead.items()):
        typer.echo(f"dead {article_id}: {reason}", err=True)
    for article_id in sorted(outcome.missing):
        typer.echo(f"timeout {article_id}: not indexed after {timeout:.0f} s", err=True)
    typer.echo(f"indexed {len(outcome.indexed)}/{len(submitted)}")
    if outcome.dead or outcome.missing or bad or sources_failed:
        raise typer.Exit(1)


async def _publish_warc(client: aioredis.Redis, path: Path, refresh: bool, submitted: set[str],
                        bar: Progress) -> None:
    """Submit the HTML pages of a WARC file as it is read, in chunks (one page in memory at a
    time while reading); say what was passed over and why."""
    from shared.settings import Settings

    tally = warc_io.WarcTally()
    task = bar.add_task("publishing the WARC file's pages", total=None)
    chunk: list[ArticleSubmitted] = []

    async def flush() -> None:
        await pipeline.publish(client, chunk)
        for article in chunk:
            typer.echo(f"submitted {article.id} {article.url}")
        submitted.update(a.id for a in chunk)
        bar.advance(task, len(chunk))
        chunk.clear()

    try:
        for article in warc_io.warc_articles(path, tally, refresh, Settings().max_page_bytes):
            chunk.append(article)
            if len(chunk) >= _WARC_CHUNK:
                await flush()
    except warc_io.WarcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if chunk:
            await flush()
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.skipped.items()))
    typer.echo(f"warc: {tally.pages} pages submitted" + (f"; passed over: {skipped}"
                                                          if skipped else ""), err=True)


_WARC_CHUNK = 500


@app.command()
def reparse(
    ids: Annotated[list[str] | None, typer.Argument(help="Article ids.")] = None,
    since: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="The pages fetched on or after this day (UTC).")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every kept page.")] = False,
    restart: Annotated[bool, typer.Option(
        help="Start again from the first page, not where an earlier run stopped.")] = False,
) -> None:
    """Run kept pages through parser → enricher → indexer again, without fetching (pages are
    kept NEWSFLOW_KEEP_PAGES_DAYS). A run cut short resumes where it stopped."""
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    from shared.pages import Selection, count_kept
    from shared.settings import Settings

    if sum((bool(ids), since is not None, all_pages)) != 1:
        typer.echo("error: give article ids, --since DATE or --all (one of them)", err=True)
        raise typer.Exit(2)
    selection = Selection(ids=tuple(ids or ()), since=since.date() if since else None)
    settings = Settings()

    async def go(pool: Any) -> int:
        client = _redis(settings)
        try:
            after = "" if restart else await reparse_io.resume_point(client, selection)
            total = await count_kept(pool, selection, after)
            if after:
                typer.echo(f"resuming after {after}", err=True)
            with Progress(*Progress.get_default_columns(), MofNCompleteColumn(),
                          console=Console(stderr=True), disable=not sys.stderr.isatty(),
                          transient=True) as bar:
                task = bar.add_task("reparsing", total=total)
                return await reparse_io.reparse(
                    client, pool, selection, restart,
                    progress=lambda batch: bar.advance(task, len(batch)))
        finally:
            await client.aclose()

    try:
        published = with_pool(go)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        typer.echo(f"error: cannot reach Redis at {settings.redis_url} (REDIS_URL): {exc}",
                   err=True)
        raise typer.Exit(1) from None
    typer.echo(f"reparse: {published} pages sent to the parser again")


@app.command()
def search(
    query: options.Query = "",
    language: options.Language = None,
    source: options.Source = None,
    entity: options.Entity = None,
    person: options.Person = None,
    organization: options.Organization = None,
    place: options.Place = None,
    credit: options.Credit = None,
    country: options.Country = None,
    since: options.Day = None,
    until: options.Day = None,
    has_duplicates: Annotated[bool | None, typer.Option(
        "--has-duplicates/--no-duplicates",
        help="Only stories published more than once / only once.")] = None,
    sort: Annotated[str, typer.Option(help="relevance, date (newest) or oldest.")] = "relevance",
    recency: Annotated[float, typer.Option(help="Recency boost for relevance (0: off).")] = 1.0,
    collapse: Annotated[bool, typer.Option(help="Fold duplicates under their story.")] = True,
    facets: Annotated[bool, typer.Option(help="Also count facets.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    offset: Annotated[int, typer.Option(min=0, help=(
        # Not store.MAX_OFFSET: reading it would load the store for every command's --help.
        "First pages only (up to 1,000); deeper, use --after."))] = 0,
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
            "credit": credit,
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
    from shared.settings import Settings

    bound = Settings().search_bound
    results: store.SearchResults = with_pool(lambda pool: store.search(pool, q, bound=bound))
    if as_json:
        typer.echo(results.model_dump_json())
        return
    about = "about " if results.total_is_estimate else ""
    typer.echo(f"{about}{plural(results.total, 'story', 'stories')} found "
               f"({about}{plural(results.total_articles, 'article', 'articles')})")
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
    article = with_pool(lambda pool: store.get_article(pool, article_id))
    if article is None:
        typer.echo(f"error: no article {article_id}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(_json(article))
        return
    typer.echo(article_header(article))
    typer.echo(article["text"])


def article_header(article: dict[str, Any]) -> str:
    """The lines above an article's text: title, site, authors and credits, URL, date language
    countries."""
    byline = ", ".join([*article["authors"], *article.get("credits", [])])
    credits = " · ".join(c for c in (article.get("site_name"), byline) if c)
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

    with_pool(go)


@app.command()
def status() -> None:
    """Per stream: length; per stage: consumers, pending, lag, oldest pending; dead letters.
    Then each live replica: its stage, consumer, metrics address, idle time and pending."""

    async def both(client: aioredis.Redis) -> tuple[list[pipeline.StreamStatus],
                                                    list[pipeline.ReplicaStatus]]:
        return await pipeline.status(client), await pipeline.live_consumers(client)

    rows, live = _with_redis(both)
    typer.echo(f"{'stream':<20} {'length':>7} {'group':<9} {'consumers':>9} {'pending':>7} "
               f"{'lag':>6} {'oldest pending':>15}")
    for r in rows:
        oldest = f"{r.oldest_pending_s:.0f} s" if r.oldest_pending_s is not None else "-"
        lag = "-" if r.lag is None else str(r.lag)
        typer.echo(f"{r.stream:<20} {r.length:>7} {r.group or '-':<9} {r.consumers:>9} "
                   f"{r.pending:>7} {lag:>6} {oldest:>15}")
    if live:
        typer.echo(f"\n{'stage':<9} {'replica (consumer)':<28} {'metrics':<21} {'idle':>8} "
                   f"{'pending':>7}")
    for replica in live:
        typer.echo(f"{replica.stage:<9} {replica.consumer:<28} {replica.metrics or '-':<21} "
                   f"{_duration(replica.idle_s):>8} {replica.pending:>7}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dead_app.command("list")
def dead_list(count: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """The newest dead letters with their reasons."""
    for entry_id, failed in _with_redis(lambda c: pipeline.dead_letters(c, count)):
        typer.echo(f"{entry_id}  {failed.group:<8}  {failed.id or '-'}  {failed.reason}")


DEAD_KEY_HELP = ("A dead letter: its entry id in articles:dead (as `dead list` shows, e.g. "
                 "1712345678901-0) or the article id (its newest dead letter).")
SHOWN_ORIGINAL_CHARS = 2_000
"""What `dead show` prints of each original field (a page can be megabytes), unless --full."""


@dead_app.command("show")
def dead_show(
    key: Annotated[str, typer.Argument(metavar="ID", help=DEAD_KEY_HELP)],
    full: Annotated[bool, typer.Option(
        help=f"Print the original entry whole (else its first {SHOWN_ORIGINAL_CHARS} "
             "characters a field).")] = False,
) -> None:
    """One dead letter, as JSON, with its original entry (decompressed)."""
    from shared.broker import unpack_original

    try:
        entry_id, failed = _with_redis(lambda c: pipeline.find_dead(c, key))
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    shown = failed.model_dump(mode="json")
    original = {k.decode(errors="replace"): v.decode(errors="replace")
                for k, v in unpack_original(failed).items()}
    for name, value in original.items():
        if not full and len(value) > SHOWN_ORIGINAL_CHARS:
            original[name] = (value[:SHOWN_ORIGINAL_CHARS]
                              + f"… ({len(value) - SHOWN_ORIGINAL_CHARS} more characters; "
                              "--full for all)")
    shown["original"] = original
    shown["original_compressed"] = False  # as shown here
    typer.echo(json.dumps({"dead_letter": entry_id, **shown}, indent=2, ensure_ascii=False))


@dead_app.command("retry")
def dead_retry(
    keys: Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help=DEAD_KEY_HELP)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Put dead letters back where they failed, to be processed again."""
    if not keys and not all_:
        typer.echo("error: name dead letters (entry ids or article ids), or --all", err=True)
        raise typer.Exit(2)
    try:
        count = _with_redis(lambda c: pipeline.retry_dead(c, None if all_ else keys))
    except (KeyError, ValueError) as exc:
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
    from shared.settings import Settings

    text = json.dumps(asyncapi_document(Settings()), indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def main() -> None:
    app()
