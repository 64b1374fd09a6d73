"""The search store (PostgreSQL full-text search): its schema, the indexer's upsert, and the queries
the search API and the CLI run. The indexer writes and the readers read the same tables, so the
schema lives here, once."""

import base64
import hashlib
import html
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import asyncpg
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from shared.messages import ArticleEnriched, reading_minutes

logger = logging.getLogger("newsflow.store")

# ISO 639-1 → PostgreSQL text-search configuration; anything else is searched as `simple`.
TS_CONFIGS: dict[str, str] = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "fi": "finnish", "fr": "french", "hu": "hungarian", "id": "indonesian",
    "it": "italian", "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish",
}
ALL_CONFIGS: tuple[str, ...] = (*sorted(set(TS_CONFIGS.values())), "simple")
ENTITY_TYPES: tuple[str, ...] = ("person", "organization", "place")

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
CREATE INDEX IF NOT EXISTS articles_language ON articles (language);
CREATE INDEX IF NOT EXISTS articles_source ON articles (source);
CREATE INDEX IF NOT EXISTS articles_countries ON articles USING gin (countries);
CREATE INDEX IF NOT EXISTS articles_entity_names ON articles USING gin (entity_names);
"""

# Added after the first release: the entities by type (display names, for facets) and their
# lower-cased "type:name" keys (for the person / organisation / place filters).
MIGRATION = """
ALTER TABLE articles ADD COLUMN IF NOT EXISTS persons text[] NOT NULL DEFAULT '{}';
ALTER TABLE articles ADD COLUMN IF NOT EXISTS organizations text[] NOT NULL DEFAULT '{}';
ALTER TABLE articles ADD COLUMN IF NOT EXISTS places text[] NOT NULL DEFAULT '{}';
ALTER TABLE articles ADD COLUMN IF NOT EXISTS entity_keys text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS articles_entity_keys ON articles USING gin (entity_keys);
CREATE INDEX IF NOT EXISTS articles_duplicate_of ON articles (duplicate_of)
    WHERE duplicate_of IS NOT NULL;
ALTER TABLE articles ADD COLUMN IF NOT EXISTS credits text[] NOT NULL DEFAULT '{}';
ALTER TABLE articles ADD COLUMN IF NOT EXISTS credit_keys text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS articles_credit_keys ON articles USING gin (credit_keys);
CREATE TABLE IF NOT EXISTS pages (
    id           text PRIMARY KEY,
    url          text,
    final_url    text,
    status       integer NOT NULL DEFAULT 200,
    content_type text NOT NULL DEFAULT 'text/html',
    fetched_at   timestamptz NOT NULL,
    html         bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS pages_fetched_at ON pages (fetched_at);
"""

# Wire agencies under the names their credit lines use: each also answers to its short name, so
# `credit=dpa` finds "Deutsche Presse-Agentur" too. Keys are lower-case, spaces collapsed.
CREDIT_ALIASES: dict[str, str] = {
    "deutsche presse-agentur": "dpa", "deutsche presse agentur": "dpa",
    "agence france-presse": "afp", "agence france presse": "afp",
    "associated press": "ap", "the associated press": "ap",
    "reuters news": "reuters", "thomson reuters": "reuters",
    "agenzia nazionale stampa associata": "ansa", "agencia efe": "efe",
    "polska agencja prasowa": "pap", "austria presse agentur": "apa",
    "schweizerische depeschenagentur": "sda", "keystone-sda": "sda",
    "katholische nachrichten-agentur": "kna", "evangelischer pressedienst": "epd",
    "sport-informations-dienst": "sid", "anadolu agency": "aa", "anadolu ajansı": "aa",
}

# Issue #23: searches scan in date order and stop early; these two indexes are the orders (an
# undated article sorts last both ways), and replace the plain published index. Relevance ranks
# on `rank_document`, the title, lead and first lines: small enough to live in the row, where
# ranking `document` read and decompressed ~10 kB of TOAST per candidate (first start on an
# existing database rewrites the table once to add it).
SEARCH_MIGRATION = """
CREATE INDEX IF NOT EXISTS articles_newest
    ON articles ((coalesce(published, '-infinity'::timestamptz)) DESC, id);
CREATE INDEX IF NOT EXISTS articles_oldest
    ON articles ((coalesce(published, 'infinity'::timestamptz)), id);
DROP INDEX IF EXISTS articles_published;
ALTER TABLE articles ADD COLUMN IF NOT EXISTS rank_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector(ts_config, coalesce(title, '')), 'A') ||
    setweight(to_tsvector(ts_config, coalesce(description, '')), 'B') ||
    setweight(to_tsvector(ts_config, left(coalesce(text, ''), 500)), 'C')
) STORED;
DO $$ BEGIN
    -- Matching reads each candidate's document: lz4 decompresses several times faster than
    -- the default pglz. New and rewritten rows only; skipped where the server lacks lz4.
    ALTER TABLE articles ALTER COLUMN document SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL;
END $$;
""" + "".join(
    # One full-text index per language: a search's per-language terms (see _match) are then
    # answered by the index alone, where one index for all returned every article holding the
    # lexeme in any language and each had its document read to check the language.
    f"CREATE INDEX IF NOT EXISTS articles_document_{c} ON articles USING gin (document) "
    f"WHERE ts_config = '{c}'::regconfig;\n"
    for c in ALL_CONFIGS
) + "DROP INDEX IF EXISTS articles_document;\n"

_COLUMNS = (
    "id", "url", "final_url", "canonical_url", "title", "description", "text", "authors", "tags",
    "site_name", "source", "image", "published", "modified", "language", "language_confidence",
    "ts_config", "words", "entities", "entity_names", "countries", "keywords", "summary",
    "duplicate_of", "paywalled", "trace", "content_hash",
    "persons", "organizations", "places", "entity_keys", "credits", "credit_keys",
)

_UPSERT = f"""
INSERT INTO articles ({", ".join(_COLUMNS)})
VALUES ({", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))})
ON CONFLICT (id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "id")}, indexed_at = now()
WHERE articles.content_hash IS DISTINCT FROM EXCLUDED.content_hash
"""  # noqa: S608 -- built from the constant column list above, never from input


async def connect(
    database_url: str, *, min_size: int = 1, max_size: int = 5, read_only: bool = False
) -> asyncpg.Pool:
    """A connection pool with the schema in place; `read_only` pools refuse every write.

    asyncpg always prepares statements, and PostgreSQL then switches them to a generic plan that
    was measured ~7x slower on filtered searches: force custom plans."""
    conn = await asyncpg.connect(database_url)
    try:
        # Two services may start at once: serialise the DDL.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7302714)")
            migrating = await conn.fetchval(
                "SELECT to_regclass('articles') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                "information_schema.columns WHERE table_name = 'articles' "
                "AND column_name = 'entity_keys')"
            )
            await conn.execute(SCHEMA)
            await conn.execute(MIGRATION)
            # Building the indexes above on an existing archive is one full-text index build.
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            await conn.execute(SEARCH_MIGRATION)
            if migrating:
                await _backfill_entity_columns(conn)
    finally:
        await conn.close()
    # JIT compilation was measured adding 1.4-2.1 s to searches that take tens of ms without it.
    server_settings = {"plan_cache_mode": "force_custom_plan", "jit": "off"}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, server_settings=server_settings,
    )
    return pool


async def _backfill_entity_columns(conn: asyncpg.Connection) -> None:
    """Fill the by-type entity columns of rows written before they existed (once)."""
    rows = await conn.fetch("SELECT id, entities FROM articles WHERE entities <> '[]'::jsonb")
    await conn.executemany(
        "UPDATE articles SET persons = $2, organizations = $3, places = $4, entity_keys = $5 "
        "WHERE id = $1",
        [(r["id"], *_entity_columns(json.loads(r["entities"]))) for r in rows],
    )


def _entity_columns(
    entities: list[dict[str, Any]],
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Display names by type (persons, organisations, places) and the "type:name" filter keys."""
    by_type: dict[str, set[str]] = {t: set() for t in ENTITY_TYPES}
    for entity in entities:
        if entity.get("type") in by_type and entity.get("name"):
            by_type[entity["type"]].add(entity["name"])
    keys = sorted({f"{t}:{n.lower()}" for t, names in by_type.items() for n in names})
    return (sorted(by_type["person"]), sorted(by_type["organization"]), sorted(by_type["place"]),
            keys)


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
    entities = [e.model_dump() for e in article.entities]
    return (
        article.id, article.url, article.final_url, article.canonical_url, article.title,
        article.description, article.text, article.authors, article.tags, article.site_name,
        source_of(article), article.image, article.published, article.modified, language,
        article.language_confidence, TS_CONFIGS.get(language, "simple"), article.words,
        json.dumps(entities),
        sorted({e.name.lower() for e in article.entities}), article.countries, article.keywords,
        article.summary, article.duplicate_of, article.paywalled,
        json.dumps({k: v.isoformat() for k, v in article.trace.items()}), content_hash,
        *_entity_columns(entities), article.credits, credit_keys(article.credits),
    )


# What the store keeps of a title and a description: more is not one (a page's whole text in its
# <title>), and capped here the text alone decides whether the document fits a tsvector.
MAX_TITLE_CHARS = 2_000
MAX_DESCRIPTION_CHARS = 10_000

# PostgreSQL refuses a tsvector whose lexemes and positions take over 1 MB ("string is too long
# for tsvector"). How much text makes that many depends on its words (measured: 0.9 to 2.5 bytes
# of tsvector per byte of text, hyphenated and URL-like words costing most), so below this size
# nothing is checked, and above it PostgreSQL itself says whether the document fits.
_TSVECTOR_CHECK_BYTES = 128 * 1024
_TSVECTOR_SIZE = re.compile(r"\((\d+) bytes, max (\d+) bytes\)")
_DOCUMENT = """SELECT (setweight(to_tsvector($1::regconfig, $2), 'A') ||
    setweight(to_tsvector($1::regconfig, $3), 'B') ||
    setweight(to_tsvector($1::regconfig, $4), 'C')) IS NOT NULL"""


def _cut(text: str, chars: int) -> str:
    """`text` cut to at most `chars` characters, at a space when one is near the end."""
    if len(text) <= chars:
        return text
    cut = text[:chars]
    space = cut.rfind(" ")
    return cut[:space] if space > chars * 0.9 else cut


def _capped_fields(article: ArticleEnriched) -> ArticleEnriched:
    update: dict[str, str] = {}
    if len(article.title) > MAX_TITLE_CHARS:
        update["title"] = _cut(article.title, MAX_TITLE_CHARS)
    if article.description and len(article.description) > MAX_DESCRIPTION_CHARS:
        update["description"] = _cut(article.description, MAX_DESCRIPTION_CHARS)
    if update:
        logger.warning("capped the %s of %s to %d and %d characters", " and ".join(update),
                       article.id, MAX_TITLE_CHARS, MAX_DESCRIPTION_CHARS,
                       extra={"article_id": article.id})
        article = article.model_copy(update=update)
    return article


async def _fit_tsvector(
    conn: "asyncpg.pool.PoolConnectionProxy[Any]", article: ArticleEnriched
) -> ArticleEnriched:
    """The article, its text cut (with a logged reason) until its document fits a tsvector: a
    searchable start of a huge text is worth more than an article the store refuses for ever."""
    article = _capped_fields(article)
    config = TS_CONFIGS.get(article.language or "und", "simple")
    text, original = article.text, len(article.text)
    size = len(article.title.encode()) + len((article.description or "").encode())
    if size + len(text.encode()) <= _TSVECTOR_CHECK_BYTES:
        return article
    for _ in range(8):
        try:
            await conn.fetchval(_DOCUMENT, config, article.title, article.description or "",
                                text)
        except asyncpg.ProgramLimitExceededError as error:
            found = _TSVECTOR_SIZE.search(str(error))
            if "tsvector" not in str(error) or not text:
                raise
            share = int(found[2]) / int(found[1]) if found else 0.5
            # 10 % under the proportional share: the tsvector does not grow quite linearly.
            text = _cut(text, int(len(text) * share * 0.9))
            continue
        if len(text) < original:
            logger.warning("capped the text of %s from %d to %d characters: its words were "
                           "more than a PostgreSQL tsvector holds (1 MB)", article.id, original,
                           len(text), extra={"article_id": article.id})
            article = article.model_copy(update={"text": text})
        return article
    raise ValueError(f"the text of {article.id} does not fit a tsvector however cut")


def credit_key(credit: str) -> str:
    """What a credit is filtered by: lower case, spaces collapsed, an agency by its short name."""
    key = " ".join(credit.lower().split())
    return CREDIT_ALIASES.get(key, key)


def credit_keys(credits: list[str]) -> list[str]:
    """The filter keys of an article's credits: each as written and, for an agency, its short
    name ("Deutsche Presse-Agentur" → "deutsche presse-agentur", "dpa")."""
    return sorted({k for c in credits for k in (" ".join(c.lower().split()), credit_key(c))})


async def upsert_articles(pool: asyncpg.Pool, articles: list[ArticleEnriched]) -> None:
    """Insert or update by id, in one transaction; unchanged content is not rewritten. A title,
    description or text too large for the store is cut, with a logged reason."""
    async with pool.acquire() as conn:
        fitted = [await _fit_tsvector(conn, a) for a in articles]
        async with conn.transaction():
            await conn.executemany(_UPSERT, [_row(a) for a in fitted])


# --- Queries ---------------------------------------------------------------------------------


def _blank_to_none(value: Any) -> Any:
    """An empty form field means "no filter", not an invalid value."""
    if isinstance(value, str):
        value = value.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    if isinstance(value, str) and not value.strip():
        return None
    return value.strip() if isinstance(value, str) else value


# Optional filters: blank means none; the constraints apply to a given value.
Blank = BeforeValidator(_blank_to_none)
Name = Annotated[Annotated[str, Field(max_length=200)] | None, Blank]
Language = Annotated[Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}$")] | None, Blank]
Country = Annotated[Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None, Blank]
Source = Annotated[Annotated[str, Field(max_length=253)] | None, Blank]


# The days a filter may name: the end of `until` (the next midnight) must still be a date, in
# Python as in PostgreSQL.
MIN_DAY = date(1, 1, 1)
MAX_DAY = date(9999, 12, 30)


class SearchFilters(BaseModel):
    """What to look for: words (web-search syntax) and filters, all optional and combinable."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field("", max_length=500, description=(
        'Words, "quoted phrases", -exclusion, OR. Matched in each article\'s own language; '
        "anything unparsable degrades to a plain word search."))
    language: Language = Field(None, description="ISO 639-1 code, e.g. en (und: unknown).")
    source: Source = Field(None, description="Site host (example.com) or site name.")
    entity: Name = Field(None, description="A person, organisation or place, any of them.")
    person: Name = Field(None, description="A person named in the article.")
    organization: Name = Field(None, description="An organisation named in the article.")
    place: Name = Field(None, description="A place named in the article.")
    credit: Name = Field(None, description=(
        "An organisation credited with the story: a wire agency (dpa, AFP, Reuters, AP…; short "
        "or full name) or the publisher's desk."))
    country: Country = Field(None, description="ISO 3166 alpha-2 code, e.g. IR.")
    since: date | None = Field(None, ge=MIN_DAY, le=MAX_DAY,
                               description="Published on or after this day (UTC).")
    until: date | None = Field(None, ge=MIN_DAY, le=MAX_DAY,
                               description="Published on or before this day (UTC).")
    has_duplicates: bool | None = Field(None, description=(
        "true: only stories published more than once (the article is a duplicate or has "
        "duplicates); false: only stories published once."))

    @field_validator("q", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return value.replace("\x00", "") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dates_in_order(self) -> "SearchFilters":
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must be on or before until")
        return self


# Offsets serve the first pages only: a deep offset makes PostgreSQL walk every row before it.
MAX_OFFSET = 1000
# Searches count, rank and facet at most this many matching articles (the newest); past it the
# totals are estimates. The API and CLI pass NEWSFLOW_SEARCH_BOUND.
SEARCH_BOUND = 1000


class SearchQuery(SearchFilters):
    """A search: filters, order, page, and whether to fold duplicates and count facets."""

    sort: Literal["relevance", "date", "oldest"] = Field("relevance", description=(
        "relevance (with the recency boost; newest first when there are no words), date (newest "
        "first) or oldest."))
    recency: float = Field(1.0, ge=0, le=10, description=(
        "Recency boost for relevance: a story published today scores up to (1 + recency) times "
        "its text rank; 0 turns it off."))
    half_life_days: float = Field(30.0, ge=0.01, le=3650,
                                  description="Days after which the recency boost halves.")
    collapse: bool = Field(True, description=(
        "Fold duplicates (articles whose duplicate_of is another indexed article) under their "
        "first article, listed as `similar`."))
    facets: bool = Field(False, description="Also count facets for the query (see /facets).")
    limit: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0, description=(
        f"For the first pages only (up to {MAX_OFFSET:,}); page on with `after`."))
    after: str | None = Field(None, max_length=1000, description=(
        "Cursor: the `next` of the previous page, to continue after it (any depth)."))

    @field_validator("offset")
    @classmethod
    def _shallow(cls, value: int) -> int:
        if value > MAX_OFFSET:
            raise ValueError(f"offsets stop at {MAX_OFFSET:,}; to page deeper pass `after`, "
                             "the `next` cursor of the previous page")
        return value

    @field_validator("after", mode="before")
    @classmethod
    def _cursor(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is not None:
            Cursor.decode(value)  # raises ValueError: a 422 that says the cursor is invalid
        return value

    @model_validator(mode="after")
    def _cursor_fits(self) -> "SearchQuery":
        if self.after is not None:
            if self.offset:
                raise ValueError("pass either offset or after, not both")
            if Cursor.decode(self.after).kind != _page_kind(self):
                raise ValueError("this cursor belongs to a search in another order")
        return self


class Cursor(BaseModel):
    """Where a page ended (its last story's sort key): the next page starts after it."""

    kind: Literal["score", "newest", "oldest"]
    score: float = 0.0
    published: datetime | None = None
    id: str

    def encode(self) -> str:
        raw = [self.kind, self.score, self.published.isoformat() if self.published else None,
               self.id]
        return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> "Cursor":
        try:
            kind, score, published, id_ = json.loads(
                base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            return cls(kind=kind, score=score, published=published, id=id_)
        except (ValueError, TypeError) as exc:  # binascii.Error and ValidationError included
            raise ValueError("invalid cursor: pass the `next` of a previous page") from exc


def _page_kind(query: SearchQuery) -> Literal["score", "newest", "oldest"]:
    """How a search's pages are ordered: by score (relevance with words), else by date."""
    if query.sort == "oldest":
        return "oldest"
    return "score" if query.sort == "relevance" and query.q.strip() else "newest"


class FacetQuery(SearchFilters):
    """Facet counts for a search: the filters and how many values per facet."""

    top: int = Field(10, ge=1, le=100, description="Values per facet (days: every day).")


class FacetValue(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    """Counts of matching articles (duplicates included) by value, most frequent first; days in
    order."""

    languages: list[FacetValue] = Field(default_factory=list)
    sources: list[FacetValue] = Field(default_factory=list)
    countries: list[FacetValue] = Field(default_factory=list)
    persons: list[FacetValue] = Field(default_factory=list)
    organizations: list[FacetValue] = Field(default_factory=list)
    places: list[FacetValue] = Field(default_factory=list)
    credits: list[FacetValue] = Field(default_factory=list)
    days: list[FacetValue] = Field(default_factory=list)
    sample: int | None = Field(None, description=(
        "Set when the search matched more articles than the bound: the counts are over this "
        "many matching articles, the newest ones (\"facets over the newest N\")."))


class SimilarArticle(BaseModel):
    id: str
    url: str | None
    title: str
    source: str | None
    published: datetime | None


class SearchHit(BaseModel):
    id: str
    url: str | None
    title: str
    site_name: str | None
    source: str | None
    published: datetime | None
    language: str
    countries: list[str]
    snippet: str = Field(description="HTML-escaped text; the matches are in <mark>…</mark>.")
    score: float
    duplicate_of: str | None = None
    similar: list[SimilarArticle] = Field(
        default_factory=list, description="The story's other matching articles (collapse).")


class SearchResults(BaseModel):
    total: int = Field(description="Matching stories (articles, without collapse).")
    total_articles: int = Field(0, description="Matching articles, duplicates included.")
    total_is_estimate: bool = Field(False, description=(
        "The search matched more articles than the bound: both totals are estimates (show "
        "them as \"about\"), relevance ranks the newest matches up to the bound, and facets "
        "count those."))
    offset: int = 0
    limit: int = 10
    hits: list[SearchHit]
    next: str | None = Field(None, description=(
        "Cursor of the next page (pass it as `after`); null on the last page."))
    facets: Facets | None = None


# Private-use characters mark the matches inside ts_headline, so that the snippet can be
# HTML-escaped afterwards without confusing the article's own text with our markup.
_START, _STOP = "\ue000", "\ue001"
_HEADLINE_OPTIONS = (f"MaxFragments=2, MaxWords=35, MinWords=15, "
                     f'StartSel="{_START}", StopSel="{_STOP}"')


def _snippet_html(raw: str | None) -> str:
    escaped = html.escape(" ".join((raw or "").split()), quote=False)
    return escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")


def _match(param: str, a: str = "a", loose: bool = False) -> str:
    """The article matches the query in its own language's configuration. One OR term per
    configuration keeps each tsquery a constant, so the GIN index is used. `loose` relaxes
    phrases to all their words (`<->` to `&`): what GIN answers without reading documents."""

    def tsquery(config: str) -> str:
        exact = f"websearch_to_tsquery('{config}', {param})"
        return f"regexp_replace({exact}::text, '<[0-9]+>|<->', '&', 'g')::tsquery" if loose \
            else exact

    return "(" + " OR ".join(
        f"({a}.ts_config = '{c}'::regconfig AND {a}.document @@ {tsquery(c)})"
        for c in ALL_CONFIGS
    ) + ")"


def _phrases(f: SearchFilters) -> bool:
    """The words hold a "quoted phrase" (and no excluded one, which relaxing would widen)."""
    return '"' in f.q and '-"' not in f.q


class _Args:
    """Bind parameters: each value becomes `$n`; no input is ever put into the SQL text."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _where(f: SearchFilters, arg: _Args, a: str = "a", loose: bool = False) -> str:
    """The WHERE clause of a search over `articles {a}` (`loose`: phrases relaxed)."""
    where: list[str] = []
    q = f.q.strip()
    if q:
        where.append(_match(arg(q), a, loose))
    if f.language:
        where.append(f"{a}.language = {arg(f.language.lower())}")
    if f.source:
        source = f.source.lower().removeprefix("www.")
        where.append(f"({a}.source = {arg(source)} OR lower({a}.site_name) = {arg(source)})")
    if f.entity:
        where.append(f"{a}.entity_names @> ARRAY[{arg(f.entity.lower())}]::text[]")
    for kind, name in (("person", f.person), ("organization", f.organization),
                       ("place", f.place)):
        if name:
            where.append(f"{a}.entity_keys @> ARRAY[{arg(f'{kind}:{name.lower()}')}]::text[]")
    if f.credit:
        where.append(f"{a}.credit_keys @> ARRAY[{arg(credit_key(f.credit))}]::text[]")
    if f.country:
        where.append(f"{a}.countries @> ARRAY[{arg(f.country.upper())}]::text[]")
    if f.since:
        where.append(f"{a}.published >= {arg(_day_start(f.since))}")
    if f.until:
        where.append(f"{a}.published < {arg(_day_start(f.until + timedelta(days=1)))}")
    if f.has_duplicates is not None:
        has = (f"({a}.duplicate_of IS NOT NULL OR EXISTS "  # noqa: S608 -- constant SQL and bind parameters
               f"(SELECT 1 FROM articles {a}_d WHERE {a}_d.duplicate_of = {a}.id))")
        where.append(has if f.has_duplicates else f"NOT {has}")
    return " AND ".join(where) or "true"


# The date orders as index keys (articles_newest, articles_oldest): undated articles last.
_NEWEST = "coalesce({a}.published, '-infinity'::timestamptz)"
_OLDEST = "coalesce({a}.published, 'infinity'::timestamptz)"


def _date_range(f: SearchFilters, arg: _Args, key: str) -> list[str]:
    """The since/until filters restated on a date key, so that its index scan starts and stops
    at the dates instead of filtering its way there (same rows: an undated article fails the
    published filters anyway)."""
    where = []
    if f.since:
        where.append(f"{key} >= {arg(_day_start(f.since))}")
    if f.until:
        where.append(f"{key} < {arg(_day_start(f.until + timedelta(days=1)))}")
    return where


_FACET_COLUMNS = (", a.language, a.source, a.countries, a.persons, a.organizations, a.places, "
                  "a.credits")


# A phrase is checked on at most this many times the bound of the newest articles holding all
# its words: the check reads each document, and a phrase of common words can be rare.
PHRASE_WINDOW = 2


def _sample_sql(f: SearchFilters, arg: _Args, bound: int, columns: str = "") -> str:
    """CTEs: `sample`, the newest `bound` + 1 matching articles, numbered (nth): what a search
    counts, ranks and facets. An ordered scan of articles_newest that stops early when matches
    are common, or a GIN bitmap and a top-N sort when they are rare: either way, bounded work.
    With a phrase, `win` first takes the newest PHRASE_WINDOW x `bound` articles that hold all
    its words, and the sample is the phrase's matches among them."""
    key = _NEWEST.format(a="a")
    if not _phrases(f):
        where = " AND ".join([_where(f, arg), *_date_range(f, arg, key)])
        return f"""win AS (SELECT NULL), sample AS MATERIALIZED (
            SELECT x.*, row_number() OVER () AS nth FROM (
                SELECT a.id, a.published, a.duplicate_of{columns} FROM articles a WHERE {where}
                ORDER BY {key} DESC, a.id LIMIT {arg(bound + 1)}
            ) x)"""  # noqa: S608 -- constant SQL and bind parameters
    where = " AND ".join([_where(f, arg, loose=True), *_date_range(f, arg, key)])
    return f"""win AS MATERIALIZED (
            SELECT a.id, a.published, a.duplicate_of, a.ts_config, a.document{columns}
            FROM articles a WHERE {where}
            ORDER BY {key} DESC, a.id LIMIT {arg(bound * PHRASE_WINDOW)}
        ), sample AS MATERIALIZED (
            SELECT w.id, w.published, w.duplicate_of{columns.replace("a.", "w.")},
                   row_number() OVER (ORDER BY {_NEWEST.format(a="w")} DESC, w.id) AS nth
            FROM win w WHERE {_match(arg(f.q.strip()), "w")}
        )"""  # noqa: S608 -- constant SQL and bind parameters


def _story(a: str, collapse: bool) -> str:
    """The story an article belongs to: the indexed article it duplicates, else itself."""
    if not collapse:
        return f"{a}.id"
    return (f"CASE WHEN {a}.duplicate_of IS NOT NULL AND {a}.duplicate_of <> {a}.id "  # noqa: S608 -- constant SQL and bind parameters
            f"AND EXISTS "
            f"(SELECT 1 FROM articles l WHERE l.id = {a}.duplicate_of) "
            f"THEN {a}.duplicate_of ELSE {a}.id END")


def _represents(f: SearchFilters, arg: _Args, a: str = "a") -> str:
    """The matching article represents its story: it is the story's first article, or that one
    does not match and no matching duplicate was published before it. Decided per row with
    index lookups (only duplicates need any), so that date-ordered pages can start anywhere."""
    before = (f"(coalesce(s.published, 'infinity'::timestamptz), s.id) < "
              f"(coalesce({a}.published, 'infinity'::timestamptz), {a}.id)")
    return (f"({a}.duplicate_of IS NULL OR NOT EXISTS (SELECT 1 FROM articles l "  # noqa: S608 -- constant SQL and bind parameters
            f"WHERE l.id = {a}.duplicate_of AND l.id <> {a}.id AND ({_where(f, arg, 'l')} "
            f"OR EXISTS (SELECT 1 FROM articles s WHERE s.duplicate_of = l.id AND s.id <> {a}.id "
            f"AND {before} AND {_where(f, arg, 's')}))))")


def _facets_sql(top: str) -> str:
    """Facet counts over the CTE `fm`, as one JSON array of [facet, value, count]."""
    parts = [f"(SELECT 'languages', language, count(*) FROM fm GROUP BY 2 ORDER BY 3 DESC, "  # noqa: S608 -- constant SQL and bind parameters
             f"2 "
             f"LIMIT {top})",
             f"(SELECT 'sources', source, count(*) FROM fm WHERE source IS NOT NULL "  # noqa: S608 -- constant SQL and bind parameters
             f"GROUP BY 2 ORDER BY 3 DESC, 2 LIMIT {top})"]
    parts += [f"(SELECT '{name}', v, count(*) FROM fm, unnest(fm.{name}) v "  # noqa: S608 -- constant SQL and bind parameters
              f"GROUP BY 2 ORDER BY 3 DESC, 2 LIMIT {top})"
              for name in ("countries", "persons", "organizations", "places")]
    # Credits as written, counted once whatever their case.
    parts.append(f"(SELECT 'credits', min(v), count(*) FROM fm, unnest(fm.credits) v "  # noqa: S608 -- constant SQL and bind parameters
                 f"GROUP BY lower(v) ORDER BY 3 DESC, 2 LIMIT {top})")
    parts.append("(SELECT 'days', to_char(published AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*) "
                 "FROM fm WHERE published IS NOT NULL GROUP BY 2 ORDER BY 2 LIMIT 3660)")
    union = "\n UNION ALL ".join(parts)
    return f"(SELECT json_agg(json_build_array(f, v, c)) FROM ({union}) AS x(f, v, c))"  # noqa: S608 -- constant SQL and bind parameters


def _search_sql(query: SearchQuery, arg: _Args, bound: int) -> str:
    q = query.q.strip()
    kind = _page_kind(query)
    cursor = Cursor.decode(query.after) if query.after else None
    columns = _FACET_COLUMNS if query.facets else ""
    ctes = _sample_sql(query, arg, bound, columns)
    grouped = f"SELECT s.*, {_story('s', query.collapse)} AS story FROM sample s"  # noqa: S608 -- constant SQL and bind parameters
    lead_first = ("row_number() OVER (PARTITION BY c.story ORDER BY c.id = c.story DESC, "
                  "c.published ASC NULLS LAST, c.id) AS rn")
    newest = _NEWEST.replace("{a}.", "{p}")  # {p}: "p." or nothing
    if kind == "score":
        tsq = "t.query"  # parsed once per configuration, not once per candidate
        # The boost decays from the start of today, so the order is stable while paging.
        # Past 1,000 half-lives the boost is nil; capped there, power() cannot underflow (an
        # error in PostgreSQL) for an old article and a short half-life.
        boost = (f"coalesce(power(0.5, least(greatest(extract(epoch FROM date_trunc('day', now()) "
                 f"- a.published), 0) / 86400.0 / {arg(query.half_life_days)}::float8, 1000)), 0)")
        score = (f"ts_rank_cd(a.rank_document, {tsq}) * "
                 f"(1 + {arg(query.recency)}::float8 * {boost})")
        order = f"{{p}}story_score DESC, {newest} DESC, {{p}}id"
        after = "true"
        if cursor:
            k = f"coalesce({arg(cursor.published)}::timestamptz, '-infinity'::timestamptz)"
            s, i, key = arg(cursor.score), arg(cursor.id), newest.format(p="")
            after = (f"(story_score < {s}::float8 OR (story_score = {s}::float8 AND ({key} < {k} "
                     f"OR ({key} = {k} AND id > {i}::text))))")
        ranked = f"""
            scored AS (
                SELECT g.*, ({score})::float8 AS score
                FROM grouped g JOIN articles a ON a.id = g.id
                JOIN (SELECT c, websearch_to_tsquery(c, {arg(q)})
                      FROM unnest({arg(list(ALL_CONFIGS))}::regconfig[]) c) t(config, query)
                  ON t.config = a.ts_config
                WHERE g.nth <= {arg(bound)}
            ), ranked AS (
                SELECT c.*, {lead_first}, max(c.score) OVER (PARTITION BY c.story) AS story_score
                FROM scored c
            ), page AS (
                SELECT * FROM ranked WHERE rn = 1 AND {after}
                ORDER BY {order.format(p="")}
                LIMIT {arg(query.limit + 1)} OFFSET {arg(query.offset)}
            )"""  # noqa: S608 -- constant SQL and bind parameters
    else:
        key, direction = ((_OLDEST.format(a="a"), "") if kind == "oldest"
                          else (_NEWEST.format(a="a"), " DESC"))
        order = ((_OLDEST.replace("{a}.", "{p}") if kind == "oldest" else f"{newest} DESC")
                 + ", {p}id")
        where = [_where(query, arg), *_date_range(query, arg, key)]
        if query.collapse:
            where.append(_represents(query, arg))
        if cursor and kind == "oldest":
            where.append(f"({key}, a.id) > (coalesce({arg(cursor.published)}::timestamptz, "
                         f"'infinity'::timestamptz), {arg(cursor.id)}::text)")
        elif cursor:
            k = f"coalesce({arg(cursor.published)}::timestamptz, '-infinity'::timestamptz)"
            where.append(f"{key} <= {k} AND ({key} < {k} OR a.id > {arg(cursor.id)}::text)")
        ranked = f"""
            ranked AS (
                SELECT c.*, {lead_first} FROM grouped c WHERE c.nth <= {arg(bound)}
            ), page AS MATERIALIZED (
                SELECT a.id, a.published, a.duplicate_of, 0.0::float8 AS story_score,
                       {_story('a', query.collapse)} AS story
                FROM articles a WHERE {" AND ".join(where)}
                ORDER BY {key}{direction}, a.id
                LIMIT {arg(query.limit + 1)} OFFSET {arg(query.offset)}
            )"""  # noqa: S608 -- constant SQL and bind parameters
    if q:
        snippet = (f"ts_headline(a.ts_config, a.text, websearch_to_tsquery(a.ts_config, "
                   f"{arg(q)}), '{_HEADLINE_OPTIONS}')")
    else:
        snippet = "left(a.text, 240)"
    facets = f", {_facets_sql(arg(10))} AS facets" if query.facets else ", NULL AS facets"
    windowed = (", (SELECT count(*) FROM win) AS windowed" if _phrases(query)
                else ", NULL::bigint AS windowed")
    if query.collapse:
        # The story's other matching articles, found through the story's id (primary key and
        # articles_duplicate_of) rather than by rescanning the matches for every hit.
        similar = f"""(SELECT json_agg(json_build_object(
                           'id', d.id, 'url', coalesce(d.url, d.canonical_url, d.final_url),
                           'title', d.title, 'source', d.source, 'published', d.published)
                       ORDER BY d.published ASC NULLS LAST, d.id)
                FROM articles d WHERE (d.id = p.story OR d.duplicate_of = p.story)
                AND d.id <> p.id AND {_where(query, arg, "d")})"""  # noqa: S608 -- constant SQL and bind parameters
    else:
        similar = "NULL"
    return f"""
        WITH {ctes}, grouped AS ({grouped}), {ranked},
        fm AS (SELECT * FROM sample WHERE nth <= {arg(bound)}),
        totals AS (
            SELECT count(*) FILTER (WHERE rn = 1) AS total, count(*) AS total_articles,
                   (SELECT count(*) FROM sample) AS sampled{windowed}{facets}
            FROM ranked
        )
        SELECT t.total, t.total_articles, t.sampled, t.windowed, t.facets, p.id,
               p.story_score AS score,
               coalesce(a.url, a.canonical_url, a.final_url) AS url, a.title, a.site_name,
               a.source, a.published, a.language, a.countries, a.duplicate_of,
               {snippet} AS snippet, {similar} AS similar
        FROM totals t LEFT JOIN (page p JOIN articles a ON a.id = p.id) ON true
        ORDER BY {order.format(p="p.")}
    """  # noqa: S608 -- every value is a bind parameter; only constant SQL is interpolated


def _about(value: float) -> int:
    """An estimate to two significant figures: "about 510,000", not a false 512,347."""
    return int(float(f"{value:.2g}"))


async def _estimate(conn: Any, query: SearchFilters, loose: bool = False) -> float:
    """How many articles match, from the planner's statistics (no scan): for totals past the
    bound, where counting exactly would read every match."""
    arg = _Args()
    plan = await conn.fetchval(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM articles a WHERE {_where(query, arg, loose=loose)}",  # noqa: S608 -- constant SQL and bind parameters
        *arg.values)
    return float(json.loads(plan)[0]["Plan"]["Plan Rows"])


async def _bounded_count(conn: Any, query: SearchFilters, bound: int, sampled: int,
                         windowed: int | None) -> int | None:
    """The number of matching articles when the sample did not hold them all, estimated (to
    two figures); None when the sample is exact."""
    if windowed is None:
        if sampled <= bound:
            return None
        return _about(max(await _estimate(conn, query), sampled))
    if sampled <= bound and windowed < bound * PHRASE_WINDOW:
        return None
    # The phrase matched this share of the newest articles holding all its words.
    share = sampled / max(windowed, 1)
    return _about(max(await _estimate(conn, query, loose=True) * share, sampled))


def _facets_from(raw: str | None, sample: int | None) -> Facets:
    found: dict[str, Any] = {"sample": sample}
    for facet, value, count in json.loads(raw or "[]"):
        found.setdefault(facet, []).append(FacetValue(value=value, count=count))
    return Facets.model_validate(found)


async def facets(pool: asyncpg.Pool, query: SearchFilters, top: int = 10,
                 bound: int = SEARCH_BOUND) -> Facets:
    """How the articles matching a search spread over languages, sources, countries, people,
    organisations, places and days: exact up to `bound` matches, else over the newest `bound`."""
    arg = _Args()
    ctes = _sample_sql(query, arg, bound, _FACET_COLUMNS)
    windowed = "(SELECT count(*) FROM win)" if _phrases(query) else "NULL::bigint"
    sql = f"""
        WITH {ctes}, fm AS (SELECT * FROM sample WHERE nth <= {arg(bound)})
        SELECT {_facets_sql(arg(top))}, (SELECT count(*) FROM sample), {windowed}
    """  # noqa: S608 -- every value is a bind parameter; only constant SQL is interpolated
    async with pool.acquire() as conn:
        raw, sampled, in_window = (await conn.fetch(sql, *arg.values))[0]  # one row: no FROM
    exact = (sampled <= bound if in_window is None
             else sampled <= bound and in_window < bound * PHRASE_WINDOW)
    return _facets_from(raw, None if exact else min(sampled, bound))


async def search(pool: asyncpg.Pool, query: SearchQuery,
                 bound: int = SEARCH_BOUND) -> SearchResults:
    """Ranked full-text search with filters, highlighted snippets, duplicates folded under their
    first article, totals and (when asked) facets.

    The work is bounded, whatever the archive's size: totals are exact up to `bound` matching
    articles and estimated past it; relevance ranks the newest `bound` matches; facets count
    them. Date orders page through every match, by cursor."""
    arg = _Args()
    sql = _search_sql(query, arg, bound)
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql, *arg.values)
        first = rows[0]
        total, total_articles = first["total"], first["total_articles"]
        estimate = await _bounded_count(conn, query, bound, first["sampled"], first["windowed"])
        if estimate is not None:
            total = _about(estimate * total / max(total_articles, 1))
            total_articles = estimate
    hits = [
        SearchHit(
            id=r["id"], url=r["url"], title=r["title"], site_name=r["site_name"],
            source=r["source"], published=r["published"], language=r["language"],
            countries=r["countries"], snippet=_snippet_html(r["snippet"]), score=r["score"],
            duplicate_of=r["duplicate_of"],
            similar=[SimilarArticle.model_validate(s) for s in json.loads(r["similar"] or "[]")],
        )
        for r in rows if r["id"] is not None
    ]
    following = None
    if len(hits) > query.limit:
        hits = hits[:query.limit]
        last = hits[-1]
        following = Cursor(kind=_page_kind(query), score=last.score, published=last.published,
                           id=last.id).encode()
    sample = min(first["sampled"], bound) if estimate is not None else None
    counted = _facets_from(first["facets"], sample) if query.facets else None
    return SearchResults(total=total, total_articles=total_articles,
                         total_is_estimate=estimate is not None, offset=query.offset,
                         limit=query.limit, hits=hits, next=following, facets=counted)


async def count_articles(conn: Any, exact_up_to: int = 1000) -> tuple[int, bool]:
    """How many articles are stored, and whether that is an estimate: counted up to
    `exact_up_to`, past it the planner's row estimate (kept by autovacuum), so the cost does not
    grow with the table."""
    counted = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM articles LIMIT $1) x", exact_up_to + 1)
    if counted <= exact_up_to:
        return counted, False
    estimate = await conn.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = 'articles'::regclass")
    return max(estimate, counted), True


def _article(row: asyncpg.Record) -> dict[str, Any]:
    article = {k: v for k, v in dict(row).items()
               if k not in ("document", "rank_document", "ts_config", "entity_keys",
                            "credit_keys")}
    for key in ("entities", "trace"):
        article[key] = json.loads(article[key])
    article["reading_minutes"] = reading_minutes(article["words"])
    return article


async def get_article(pool: asyncpg.Pool, article_id: str) -> dict[str, Any] | None:
    """The whole stored article (text, metadata, entities, countries, keywords), or None."""
    if "\x00" in article_id:  # no id holds NUL, and PostgreSQL text cannot
        return None
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
