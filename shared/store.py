"""The search store (PostgreSQL full-text search): its schema, the indexer's upsert, and the queries
the search API and the CLI run. The indexer writes and the readers read the same tables, so the
schema lives here, once."""

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, time
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from pydantic import BaseModel, Field

from shared.messages import ArticleEnriched

# ISO 639-1 → PostgreSQL text-search configuration; anything else is searched as `simple`.
TS_CONFIGS: dict[str, str] = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "fi": "finnish", "fr": "french", "hu": "hungarian", "id": "indonesian",
    "it": "italian", "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish",
}
ALL_CONFIGS: tuple[str, ...] = (*sorted(set(TS_CONFIGS.values())), "simple")

SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id                  text PRIMARY KEY,
    url                 text,
    final_url           text,
    canonical_url       text,
    title               text NOT NULL DEFAULT '',
    description         text,
    text                text NOT NULL DEFAULT '',
    authors             text[] NOT NULL DEFAULT '{}',
    tags                text[] NOT NULL DEFAULT '{}',
    site_name           text,
    source              text,
    image               text,
    published           timestamptz,
    modified            timestamptz,
    language            text NOT NULL DEFAULT 'und',
    language_confidence real NOT NULL DEFAULT 0,
    ts_config           regconfig NOT NULL DEFAULT 'simple',
    words               integer NOT NULL DEFAULT 0,
    entities            jsonb NOT NULL DEFAULT '[]',
    entity_names        text[] NOT NULL DEFAULT '{}',
    countries           text[] NOT NULL DEFAULT '{}',
    keywords            text[] NOT NULL DEFAULT '{}',
    summary             text NOT NULL DEFAULT '',
    duplicate_of        text,
    paywalled           boolean NOT NULL DEFAULT false,
    trace               jsonb NOT NULL DEFAULT '{}',
    content_hash        text NOT NULL,
    indexed_at          timestamptz NOT NULL DEFAULT now(),
    document            tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector(ts_config, coalesce(title, '')), 'A') ||
        setweight(to_tsvector(ts_config, coalesce(description, '')), 'B') ||
        setweight(to_tsvector(ts_config, coalesce(text, '')), 'C')
    ) STORED
);
CREATE INDEX IF NOT EXISTS articles_document ON articles USING gin (document);
CREATE INDEX IF NOT EXISTS articles_published ON articles (published DESC NULLS LAST);
CREATE INDEX IF NOT EXISTS articles_language ON articles (language);
CREATE INDEX IF NOT EXISTS articles_source ON articles (source);
CREATE INDEX IF NOT EXISTS articles_countries ON articles USING gin (countries);
CREATE INDEX IF NOT EXISTS articles_entity_names ON articles USING gin (entity_names);
"""

_COLUMNS = (
    "id", "url", "final_url", "canonical_url", "title", "description", "text", "authors", "tags",
    "site_name", "source", "image", "published", "modified", "language", "language_confidence",
    "ts_config", "words", "entities", "entity_names", "countries", "keywords", "summary",
    "duplicate_of", "paywalled", "trace", "content_hash",
)

_UPSERT = f"""
INSERT INTO articles ({", ".join(_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))})
ON CONFLICT (id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "id")}, indexed_at = now()
WHERE articles.content_hash IS DISTINCT FROM EXCLUDED.content_hash
"""  # noqa: S608 -- built from the constant column list above, never from input


async def connect(database_url: str, *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    """A connection pool with the schema in place.

    asyncpg always prepares statements, and PostgreSQL then switches them to a generic plan that
    was measured ~7x slower on filtered searches: force custom plans."""
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size,
        server_settings={"plan_cache_mode": "force_custom_plan"},
    )
    # Two services may start at once: serialise the DDL.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7302714)")
        await conn.execute(SCHEMA)
    return pool


def source_of(article: ArticleEnriched) -> str | None:
    """The site an article comes from, as a host name (what the `source` filter matches)."""
    for url in (article.canonical_url, article.final_url, article.url):
        if url and (host := urlsplit(url).hostname):
            return host.removeprefix("www.")
    return article.site_name


def _row(article: ArticleEnriched) -> tuple[Any, ...]:
    content = article.model_dump(mode="json", exclude={"trace"})
    content_hash = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    language = article.language or "und"
    return (
        article.id, article.url, article.final_url, article.canonical_url, article.title,
        article.description, article.text, article.authors, article.tags, article.site_name,
        source_of(article), article.image, article.published, article.modified, language,
        article.language_confidence, TS_CONFIGS.get(language, "simple"), article.words,
        json.dumps([e.model_dump() for e in article.entities]),
        sorted({e.name.lower() for e in article.entities}), article.countries, article.keywords,
        article.summary, article.duplicate_of, article.paywalled,
        json.dumps({k: v.isoformat() for k, v in article.trace.items()}), content_hash,
    )


async def upsert_articles(pool: asyncpg.Pool, articles: list[ArticleEnriched]) -> None:
    """Insert or update by id, in one transaction; unchanged content is not rewritten."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(_UPSERT, [_row(a) for a in articles])


class SearchQuery(BaseModel):
    """What a search asks for: words (web-search syntax) and filters, all optional."""

    q: str = ""
    language: str | None = None
    source: str | None = None
    entity: str | None = None
    country: str | None = None
    since: date | None = None
    until: date | None = None
    limit: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0)


class SearchHit(BaseModel):
    id: str
    url: str | None
    title: str
    site_name: str | None
    source: str | None
    published: datetime | None
    language: str
    countries: list[str]
    snippet: str
    score: float


class SearchResults(BaseModel):
    total: int
    hits: list[SearchHit]


def _match(param: str) -> str:
    """The article matches the query in its own language's configuration. One OR term per
    configuration keeps each tsquery a constant, so the GIN index is used."""
    return "(" + " OR ".join(
        f"(a.ts_config = '{c}'::regconfig AND a.document @@ websearch_to_tsquery('{c}', {param}))"
        for c in ALL_CONFIGS
    ) + ")"


async def search(pool: asyncpg.Pool, query: SearchQuery) -> SearchResults:
    """Ranked full-text search with filters, highlighted snippets and the total count."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    q = query.q.strip()
    if q:
        where.append(_match(arg(q)))
    if query.language:
        where.append(f"a.language = {arg(query.language.lower())}")
    if query.source:
        source = query.source.lower().removeprefix("www.")
        where.append(f"(a.source = {arg(source)} OR lower(a.site_name) = {arg(source)})")
    if query.entity:
        where.append(f"a.entity_names @> ARRAY[{arg(query.entity.lower())}]::text[]")
    if query.country:
        where.append(f"a.countries @> ARRAY[{arg(query.country.upper())}]::text[]")
    if query.since:
        where.append(f"a.published >= {arg(datetime.combine(query.since, time.min))}")
    if query.until:
        where.append(f"a.published < {arg(datetime.combine(query.until, time.max))}")
    clause = " AND ".join(where) or "true"
    clause_args = list(args)
    if q:
        tsq = f"websearch_to_tsquery(a.ts_config, {arg(q)})"
        score = f"ts_rank_cd(a.document, {tsq})"
        snippet = (f"ts_headline(a.ts_config, a.text, {tsq}, 'MaxFragments=2, MaxWords=35, "
                   "MinWords=15, StartSel=<mark>, StopSel=</mark>')")
    else:
        score, snippet = "0.0", "left(a.text, 240)"
    sql = f"""
        SELECT a.id, a.url, a.title, a.site_name, a.source, a.published, a.language, a.countries,
               {snippet} AS snippet, {score}::float8 AS score, count(*) OVER () AS total
        FROM articles a WHERE {clause}
        ORDER BY score DESC, a.published DESC NULLS LAST, a.id
        LIMIT {arg(query.limit)} OFFSET {arg(query.offset)}
    """  # noqa: S608 -- every value is a bind parameter; only constant SQL is interpolated
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
        total = rows[0]["total"] if rows else await conn.fetchval(
            f"SELECT count(*) FROM articles a WHERE {clause}",  # noqa: S608 -- as above
            *clause_args,
        )
    hits = [SearchHit(**{k: v for k, v in dict(r).items() if k != "total"}) for r in rows]
    return SearchResults(total=int(total or 0), hits=hits)


def _article(row: asyncpg.Record) -> dict[str, Any]:
    article = {k: v for k, v in dict(row).items() if k not in ("document", "ts_config")}
    for key in ("entities", "trace"):
        article[key] = json.loads(article[key])
    return article


async def get_article(pool: asyncpg.Pool, article_id: str) -> dict[str, Any] | None:
    """The whole stored article (text, metadata, entities, countries, keywords), or None."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM articles WHERE id = $1", article_id)
    return _article(row) if row else None


async def export_articles(pool: asyncpg.Pool, batch: int = 500) -> AsyncIterator[dict[str, Any]]:
    """Every stored article, in id order, read in batches (constant memory)."""
    after = ""
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT * FROM articles WHERE id > $1 ORDER BY id LIMIT $2", after, batch
            )
        for row in rows:
            yield _article(row)
        if len(rows) < batch:
            return
        after = rows[-1]["id"]
