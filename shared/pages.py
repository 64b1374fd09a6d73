"""The page archive: each fetched page kept, compressed, in PostgreSQL (table `pages`, created with
the search store's schema) for NEWSFLOW_KEEP_PAGES_DAYS, so that `newsflow reparse` can run it
through parser → enricher → indexer again without fetching. The parser writes; the CLI reads."""

import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import asyncpg

from shared.messages import ArticleFetched

# zlib level 6: within a few per cent of level 9 on news pages, at a fraction of the CPU.
_LEVEL = 6

_KEEP = """
INSERT INTO pages (id, url, final_url, status, content_type, fetched_at, html)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO UPDATE SET
    url = EXCLUDED.url, final_url = EXCLUDED.final_url, status = EXCLUDED.status,
    content_type = EXCLUDED.content_type, fetched_at = EXCLUDED.fetched_at, html = EXCLUDED.html
WHERE pages.fetched_at <= EXCLUDED.fetched_at
"""


async def keep_page(pool: asyncpg.Pool, page: ArticleFetched) -> None:
    """Keep the page (a newer fetch of the same article replaces an older one, never the
    reverse: a re-parsed page keeps its first fetch time, so it still expires on time)."""
    await pool.execute(_KEEP, page.id, page.url, page.final_url, page.status, page.content_type,
                       page.fetched_at, zlib.compress(page.html.encode("utf-8"), _LEVEL))


async def drop_expired(pool: asyncpg.Pool, days: int) -> int:
    """Delete the pages fetched more than `days` days ago; returns how many."""
    done: str = await pool.execute(
        "DELETE FROM pages WHERE fetched_at < now() - make_interval(days => $1)", days)
    return int(done.rsplit(maxsplit=1)[-1])


@dataclass(frozen=True)
class Selection:
    """Which kept pages: the ones with these ids, or fetched since a day, or (neither) all."""

    ids: tuple[str, ...] = ()
    since: date | None = None

    def where(self, first: int) -> tuple[str, list[object]]:
        """The WHERE condition (its parameters numbered from `first`) and its values."""
        if self.ids:
            return f"id = ANY(${first}::text[])", [list(self.ids)]
        if self.since:
            return f"fetched_at >= ${first}", [datetime.combine(self.since, time.min, tzinfo=UTC)]
        return "true", []


def _page(row: asyncpg.Record) -> ArticleFetched:
    html = zlib.decompress(row["html"])
    return ArticleFetched(
        id=row["id"], url=row["url"], final_url=row["final_url"], status=row["status"],
        content_type=row["content_type"], fetched_at=row["fetched_at"],
        html=html.decode("utf-8"), size_bytes=len(html), trace={"fetched": row["fetched_at"]},
    )


async def count_kept(pool: asyncpg.Pool, selection: Selection, after: str = "") -> int:
    """How many pages the selection holds (after the id `after`)."""
    condition, values = selection.where(2)
    sql = f"SELECT count(*) FROM pages WHERE id > $1 AND {condition}"  # noqa: S608 -- constant
    found: int = await pool.fetchval(sql, after, *values)
    return found


async def kept_pages(pool: asyncpg.Pool, selection: Selection, after: str = "",
                     batch: int = 100) -> AsyncIterator[list[ArticleFetched]]:
    """The selected pages in id order, after the id `after` (to resume), a batch at a time, as
    the fetcher emitted them (trace: "fetched" at the original fetch time)."""
    condition, values = selection.where(3)
    sql = (f"SELECT * FROM pages WHERE id > $1 AND {condition} "  # noqa: S608 -- constant SQL
           f"ORDER BY id LIMIT $2")
    while True:
        rows = await pool.fetch(sql, after, batch, *values)
        if not rows:
            return
        yield [_page(r) for r in rows]
        after = rows[-1]["id"]
