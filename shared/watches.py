"""Watches (saved searches that deliver new matches): their table, validation and storage. The
CLI and the API write them; the watcher reads them and records what each matched."""

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared import store
from shared.netguard import Resolver, resolve_host, url_refusal
from shared.store import ALL_CONFIGS, SearchFilters

SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    filters     jsonb NOT NULL,
    webhook     text,
    format      text NOT NULL DEFAULT 'json',
    secret      text NOT NULL,
    feed_key    text NOT NULL,
    every_copy  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS watch_matches (
    watch_id    text NOT NULL REFERENCES watches (id) ON DELETE CASCADE,
    article_id  text NOT NULL,
    story       text NOT NULL,
    indexed_at  timestamptz NOT NULL,
    matched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (watch_id, article_id)
);
CREATE INDEX IF NOT EXISTS watch_matches_story ON watch_matches (watch_id, story);
CREATE INDEX IF NOT EXISTS watch_matches_recent ON watch_matches (watch_id, matched_at DESC);
-- One row, bumped by every change to watches: the watcher reloads its index when it moves.
CREATE TABLE IF NOT EXISTS watches_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO watches_version VALUES (true, 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION watches_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE watches_version SET version = version + 1;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS watches_changed ON watches;
CREATE TRIGGER watches_changed AFTER INSERT OR UPDATE OR DELETE ON watches
    FOR EACH STATEMENT EXECUTE FUNCTION watches_bump_version();
"""

SIGNATURE_HEADER = "X-Newsflow-Signature"
"""The webhook header: "sha256=" + hex HMAC-SHA256 of the raw body with the watch's secret."""
DELIVERY_HEADER = "X-Newsflow-Delivery"
"""The webhook header carrying the idempotency key (watch id:article id)."""


class WatchError(ValueError):
    """A watch that cannot be saved as given (the message says why)."""


MATCHED_FILTERS = frozenset({"q", "language", "source", "entity", "person", "organization",
                             "place", "country", "credit", "since", "until", "has_duplicates"})
"""The search filters the watcher knows how to match (has_duplicates is refused on its own)."""


class WatchFilters(SearchFilters):
    """What a watch looks for: `newsflow search`'s words and filters. `has_duplicates` depends on
    articles that come later, so a watch cannot use it."""

    @field_validator("has_duplicates")
    @classmethod
    def _no_duplicates_filter(cls, value: bool | None) -> bool | None:
        if value is not None:
            raise ValueError("a watch cannot filter on duplicates (they arrive later); "
                             "use --every-copy to be told of each copy")
        return value

    @model_validator(mode="after")
    def _only_what_the_watcher_matches(self) -> "WatchFilters":
        # A filter added to search later must be taught to the watcher's matcher
        # (services/watcher/match.py) before a watch may use it; until then it is refused.
        extra = [k for k, v in self.model_dump().items()
                 if v is not None and k not in MATCHED_FILTERS]
        if extra:
            raise ValueError(f"a watch cannot filter on {', '.join(extra)} yet")
        return self

    def is_empty(self) -> bool:
        return not self.q.strip() and not any(
            v is not None for k, v in self.model_dump().items() if k != "q")


class WatchSpec(BaseModel):
    """A watch as asked for: a name, what to look for, and where to deliver."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\s/][^/]*$")
    filters: WatchFilters
    webhook: str | None = Field(None, max_length=2000)
    format: Literal["json", "slack"] = "json"
    secret: str | None = Field(None, min_length=16, max_length=200)
    every_copy: bool = False


class Watch(BaseModel):
    """A saved watch."""

    id: str
    name: str
    filters: WatchFilters
    webhook: str | None
    format: Literal["json", "slack"]
    secret: str = Field(repr=False)
    feed_key: str = Field(repr=False)
    every_copy: bool
    created_at: datetime

    def feed_path(self) -> str:
        return f"/watches/{self.id}/feed.atom?key={self.feed_key}"

    def public(self, base_url: str, matches: dict[str, int] | None = None) -> dict[str, Any]:
        """What `list --json`, `show --json` and the API say about it (never the secret)."""
        shown = self.model_dump(mode="json", exclude={"secret", "feed_key"})
        shown["filters"] = self.filters.model_dump(mode="json", exclude_none=True)
        shown["feed_url"] = base_url.rstrip("/") + self.feed_path()
        if matches is not None:
            shown["matches"] = matches
        return shown


def sign(secret: str, body: bytes) -> str:
    """The X-Newsflow-Signature value of a webhook body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def describe_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'filters') or 'watch'}: {e['msg']}"
        for e in exc.errors())


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Create the watch tables (serialised: several services may start at once)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7302715)")
        await conn.execute(SCHEMA)


async def connect(database_url: str, *, max_size: int = 5) -> asyncpg.Pool:
    """A pool on the store with the article and watch tables in place."""
    pool = await store.connect(database_url, max_size=max_size)
    await ensure_schema(pool)
    return pool


async def check_query(pool: asyncpg.Pool, filters: WatchFilters) -> None:
    """Refuse words that search nothing in any language (only stop words or punctuation): such a
    watch would never match, and saying so now beats a silent watch."""
    q = filters.q.strip()
    if not q:
        return
    searchable = await pool.fetchval(
        "SELECT bool_or(numnode(websearch_to_tsquery(c::regconfig, $1)) > 0) "
        "FROM unnest($2::text[]) c", q, list(ALL_CONFIGS))
    if not searchable:
        raise WatchError(f"query {q!r} has no searchable words (only stop words or symbols)")


async def create_watch(
    pool: asyncpg.Pool, spec: WatchSpec, *, allow_private: bool = False,
    allowed_networks: str = "", resolve: Resolver = resolve_host,
) -> Watch:
    """Validate and save a watch; its secret (given or generated) is in the result, once."""
    if spec.filters.is_empty():
        raise WatchError("a watch needs words or at least one filter")
    if spec.webhook is not None:
        reason = await url_refusal(spec.webhook, allow_private=allow_private,
                                   allowed_networks=allowed_networks, resolve=resolve)
        if reason:
            raise WatchError(f"webhook {spec.webhook!r} refused: {reason}")
    await check_query(pool, spec.filters)
    async with pool.acquire() as conn:
        try:
            row = await conn.fetchrow(
                "INSERT INTO watches (id, name, filters, webhook, format, secret, feed_key, "
                "every_copy) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                secrets.token_hex(8), spec.name,
                spec.filters.model_dump_json(exclude_none=True), spec.webhook, spec.format,
                spec.secret or secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                spec.every_copy)
            assert row is not None  # noqa: S101 -- INSERT … RETURNING returns the row
        except asyncpg.UniqueViolationError:
            raise WatchError(f"a watch named {spec.name!r} exists already") from None
    return _watch(row)


def _watch(row: asyncpg.Record) -> Watch:
    data = dict(row)
    data["filters"] = WatchFilters.model_validate(json.loads(data["filters"]))
    return Watch.model_validate(data)


async def list_watches(pool: asyncpg.Pool) -> list[Watch]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM watches ORDER BY name")
    return [_watch(r) for r in rows]


async def get_watch(pool: asyncpg.Pool, key: str) -> Watch | None:
    """A watch by id or by name."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM watches WHERE id = $1 OR name = $1 "
                                  "ORDER BY id = $1 DESC LIMIT 1", key.replace("\x00", ""))
    return _watch(row) if row else None


async def remove_watch(pool: asyncpg.Pool, key: str) -> bool:
    """Delete a watch (by id or name) and its matches; False when there was none."""
    async with pool.acquire() as conn:
        done = await conn.execute("DELETE FROM watches WHERE id = $1 OR name = $1",
                                  key.replace("\x00", ""))
    return bool(done != "DELETE 0")


async def version(pool: asyncpg.Pool) -> int:
    """Moves whenever a watch is added, changed or removed."""
    return int(await pool.fetchval("SELECT version FROM watches_version"))


async def match_counts(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    """Per watch id: matches in the last day and the last week."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT watch_id, count(*) FILTER (WHERE matched_at > now() - interval '1 day') d, "
            "count(*) FILTER (WHERE matched_at > now() - interval '7 days') w "
            "FROM watch_matches GROUP BY watch_id")
    return {r["watch_id"]: {"day": r["d"], "week": r["w"]} for r in rows}


class MatchedArticle(BaseModel):
    """One article a watch matched, newest first in a feed or `watch show`."""

    article_id: str
    matched_at: datetime
    title: str
    url: str | None
    published: datetime | None
    source: str | None
    language: str
    countries: list[str]
    summary: str


async def recent_matches(
    pool: asyncpg.Pool, watch_id: str, limit: int = 50
) -> list[MatchedArticle]:
    """The articles the watch matched most recently, newest first."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT m.article_id, m.matched_at, a.title, "
            "coalesce(a.url, a.canonical_url, a.final_url) AS url, a.published, a.source, "
            "a.language, a.countries, coalesce(nullif(a.summary, ''), a.description, "
            "left(a.text, 280)) AS summary "
            "FROM watch_matches m JOIN articles a ON a.id = m.article_id "
            "WHERE m.watch_id = $1 ORDER BY m.matched_at DESC, m.article_id LIMIT $2",
            watch_id, limit)
    return [MatchedArticle.model_validate(dict(r)) for r in rows]


def archive_query(watch: Watch, limit: int = 20) -> store.SearchQuery:
    """The search that shows what the watch would have matched in the archive, newest first."""
    return store.SearchQuery.model_validate(
        {**watch.filters.model_dump(), "sort": "date", "limit": limit,
         "collapse": not watch.every_copy})
