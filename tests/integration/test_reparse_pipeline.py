"""End to end: a page the parser kept runs through parser → enricher → indexer again with
`newsflow reparse`, without fetching; the indexed article is updated in place."""

import asyncio
import json
import time
from typing import Any

import asyncpg

from tests.integration.test_pipeline import Site, Stack, site, stack  # noqa: F401  (fixtures)
from tests.servers import PostgresServer


async def _query(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_reparse_runs_a_kept_page_through_the_pipeline_again(
    stack: Stack, site: Site, postgres_server: PostgresServer  # noqa: F811  (fixtures)
) -> None:
    done = stack.cli("publish", site.url("article.html"), "--wait", "--timeout", "150")
    assert done.returncode == 0, done.stdout + done.stderr
    article_id = done.stdout.split()[1]
    db = postgres_server.url
    assert asyncio.run(_query(db, "SELECT count(*) FROM pages WHERE id = $1", article_id)) == 1
    # What an older parser left in the index.
    asyncio.run(_query(db, "UPDATE articles SET title = 'stale', content_hash = 'old' "
                           "WHERE id = $1 RETURNING id", article_id))
    fetched_before = stack.log("fetcher").count(f"fetched {article_id}")
    again = stack.cli("reparse", article_id)
    assert again.returncode == 0, again.stderr
    assert "reparse: 1 pages sent to the parser again" in again.stdout
    deadline = time.monotonic() + 120
    while (title := asyncio.run(_query(db, "SELECT title FROM articles WHERE id = $1",
                                       article_id))) == "stale":
        assert time.monotonic() < deadline, stack.log("parser")[-2000:]
        time.sleep(0.5)
    expected = json.loads(stack.cli("get", article_id, "--json").stdout)
    assert title == expected["title"] != "stale"
    assert stack.log("fetcher").count(f"fetched {article_id}") == fetched_before  # no fetch
