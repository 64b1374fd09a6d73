"""Search at scale on a real PostgreSQL, with a small bound standing in for a big archive:
cursor pages cover every story exactly once in every order, totals past the bound are flagged
estimates, facets say when they count a sample, deep offsets are refused with a pointer to the
cursor, and the article count behind /health is bounded."""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from services.api.main import create_app
from shared import store
from shared.messages import ArticleEnriched
from shared.settings import Settings
from tests.fixtures.search.corpus import MARKER, build_corpus, expected, stories
from tests.servers import PostgresServer

Corpus = tuple[asyncpg.Pool, list[ArticleEnriched]]


@pytest.fixture(scope="module")
async def corpus(postgres_server: PostgresServer) -> AsyncIterator[Corpus]:
    pool = await store.connect(postgres_server.url)
    await pool.execute("TRUNCATE articles")
    articles = build_corpus()
    await store.upsert_articles(pool, articles)
    await pool.execute("ANALYZE articles")  # the estimates come from the planner's statistics
    yield pool, articles
    await pool.close()


async def every_page(pool: asyncpg.Pool, limit: int, bound: int = store.SEARCH_BOUND,
                     **params: Any) -> tuple[list[store.SearchHit], list[store.SearchResults]]:
    """Every hit of a search, following the `next` cursors from the first page to the last."""
    hits: list[store.SearchHit] = []
    pages: list[store.SearchResults] = []
    after = None
    while True:
        page = await store.search(pool, store.SearchQuery.model_validate(
            {**params, "limit": limit, "after": after}), bound=bound)
        hits += page.hits
        pages.append(page)
        after = page.next
        if after is None:
            return hits, pages
        assert len(pages) < 500, "the cursor does not advance"


SEARCHES: list[dict[str, Any]] = [
    {"q": MARKER, "sort": "relevance"}, {"q": MARKER, "sort": "date"},
    {"q": MARKER, "sort": "oldest"}, {"sort": "relevance"}, {"sort": "date"},
    {"sort": "oldest"}, {"language": "fr", "sort": "oldest"}, {"q": MARKER, "collapse": False},
    {"sort": "date", "collapse": False}, {"sort": "date", "has_duplicates": True},
]


@pytest.mark.parametrize("params", SEARCHES, ids=lambda p: ",".join(f"{k}={v}" for k, v in
                                                                     p.items()))
@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_cursor_pages_return_every_story_exactly_once(
    corpus: Corpus, params: dict[str, Any], limit: int
) -> None:
    pool, articles = corpus
    hits, pages = await every_page(pool, limit, **params)
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)), "a story came twice"
    oracle = {k: v for k, v in params.items() if k not in ("q", "sort", "collapse")}
    found = expected(articles, marker=bool(params.get("q")), **oracle)
    want = (stories(articles, found) if params.get("collapse", True)
            else {a.id: [] for a in found})
    assert {h.id: sorted(s.id for s in h.similar) for h in hits} == want
    # The same order as one big page, and the pages are full until the last.
    whole = await store.search(pool, store.SearchQuery.model_validate(
        {**params, "limit": 100}))
    if whole.total <= 100:
        assert ids == [h.id for h in whole.hits]
    assert all(len(p.hits) == limit for p in pages[:-1])
    assert all(p.total == whole.total and not p.total_is_estimate for p in pages)


async def test_date_order_pages_past_the_bound(corpus: Corpus) -> None:
    """A bound far below the matches: totals become estimates, but the date orders still page
    through every story, by cursor."""
    pool, articles = corpus
    want = stories(articles, articles)
    for sort in ("date", "oldest"):
        hits, pages = await every_page(pool, 10, bound=20, sort=sort)
        assert sorted(h.id for h in hits) == sorted(want)
        assert {h.id: sorted(s.id for s in h.similar) for h in hits} == want
        assert all(p.total_is_estimate for p in pages)


async def test_totals_past_the_bound_are_estimates(corpus: Corpus) -> None:
    pool, articles = corpus
    query = store.SearchQuery(facets=True)
    exact = await store.search(pool, query, bound=len(articles))
    assert not exact.total_is_estimate and exact.total_articles == len(articles)
    assert exact.facets is not None and exact.facets.sample is None
    assert sum(v.count for v in exact.facets.languages) == len(articles)

    bounded = await store.search(pool, query, bound=50)
    assert bounded.total_is_estimate
    # The planner's estimate, rounded to two figures: more than the bound, near the truth.
    assert 50 < bounded.total_articles <= 2 * len(articles)
    assert bounded.total_articles >= len(articles) // 2
    assert bounded.total_articles == float(f"{bounded.total_articles:.2g}")
    assert 0 < bounded.total <= bounded.total_articles
    # Facets count the newest 50 matching articles, and say so.
    assert bounded.facets is not None and bounded.facets.sample == 50
    assert sum(v.count for v in bounded.facets.languages) == 50
    newest = sorted((a for a in articles if a.published), key=lambda a: a.published,  # type: ignore[arg-type, return-value]
                    reverse=True)[:50]
    assert sorted(bounded.facets.days, key=lambda v: v.value)[0].value == min(
        a.published.date().isoformat() for a in newest)  # type: ignore[union-attr]
    alone = await store.facets(pool, query, bound=50)
    assert alone == bounded.facets
    # A search that matches fewer than the bound stays exact under the same small bound.
    few = await store.search(pool, store.SearchQuery(language="es"), bound=50)
    assert not few.total_is_estimate
    assert few.total_articles == len(expected(articles, language="es")) < 50


async def test_relevance_past_the_bound_ranks_the_newest_matches(corpus: Corpus) -> None:
    pool, articles = corpus
    hits, pages = await every_page(pool, 10, bound=30, q=MARKER)
    matching = sorted((a for a in expected(articles, marker=True)),
                      key=lambda a: (a.published is None, -(a.published.timestamp()  # type: ignore[union-attr]
                                                            if a.published else 0), a.id))
    assert len(matching) > 30 and pages[0].total_is_estimate
    newest = {a.id for a in matching[:30]}
    assert hits and {h.id for h in hits} <= newest
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("params", "message"), [
    ({"offset": store.MAX_OFFSET + 1}, "after"),
    ({"after": "not a cursor"}, "invalid cursor"),
    ({"after": "W10"}, "invalid cursor"),  # valid base64 and JSON, wrong shape
])
def test_deep_offsets_and_bad_cursors_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        store.SearchQuery.model_validate(params)


async def test_a_cursor_only_continues_its_own_order(corpus: Corpus) -> None:
    pool, _ = corpus
    page = await store.search(pool, store.SearchQuery(q=MARKER, limit=3))
    assert page.next
    with pytest.raises(ValidationError, match="another order"):
        store.SearchQuery(q=MARKER, sort="date", after=page.next)
    with pytest.raises(ValidationError, match="offset or after"):
        store.SearchQuery(q=MARKER, offset=3, after=page.next)
    # The first offset pages and the cursor agree.
    third = await store.search(pool, store.SearchQuery(q=MARKER, limit=3, offset=3))
    following = await store.search(pool, store.SearchQuery(q=MARKER, limit=3, after=page.next))
    assert [h.id for h in third.hits] == [h.id for h in following.hits]


async def test_the_api_pages_by_cursor_and_refuses_deep_offsets(
    corpus: Corpus, postgres_server: PostgresServer
) -> None:
    _, articles = corpus
    app = create_app(Settings(database_url=postgres_server.url, search_bound=40))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as api:
        deep = await api.get("/search", params={"offset": 5000})
        assert deep.status_code == 422 and "after" in deep.text
        bad = await api.get("/search", params={"after": "garbage"})
        assert bad.status_code == 422 and "cursor" in bad.text
        seen: list[str] = []
        params: dict[str, Any] = {"sort": "date", "limit": 50}
        while True:
            body = (await api.get("/search", params=params)).json()
            assert body["total_is_estimate"] is True  # 247 articles, bound 40
            seen += [h["id"] for h in body["hits"]]
            if not body["next"]:
                break
            params["after"] = body["next"]
        assert sorted(seen) == sorted(stories(articles, articles))
        facets = (await api.get("/facets")).json()
        assert facets["sample"] == 40
        health = (await api.get("/health")).json()
        assert health == {"status": "ok", "articles": len(articles),
                          "articles_is_estimate": False}


async def test_the_article_count_is_bounded(corpus: Corpus) -> None:
    pool, articles = corpus
    async with pool.acquire() as conn:
        assert await store.count_articles(conn) == (len(articles), False)
        counted, estimated = await store.count_articles(conn, exact_up_to=10)
        assert estimated and counted == len(articles)  # reltuples after ANALYZE


def cli(database_url: str, *args: str) -> "subprocess.CompletedProcess[str]":
    env = {**os.environ, "DATABASE_URL": database_url, "NEWSFLOW_SEARCH_BOUND": "30"}
    return subprocess.run([sys.executable, "-m", "services.cli", "search", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


async def test_the_cli_says_about_and_continues_after_a_cursor(
    corpus: Corpus, postgres_server: PostgresServer
) -> None:
    pool, _ = corpus
    first = await asyncio.to_thread(cli, postgres_server.url, "--sort", "date", "--limit", "5")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("about ") and " found (about " in first.stdout
    cursor = next(line.split()[1] for line in first.stdout.splitlines()
                  if line.startswith("next: "))
    second = await asyncio.to_thread(cli, postgres_server.url, "--sort", "date", "--limit", "5",
                                     "--after", cursor, "--json")
    assert second.returncode == 0, second.stderr
    want = await store.search(pool, store.SearchQuery(sort="date", limit=5, offset=5))
    assert [h["id"] for h in store.SearchResults.model_validate_json(second.stdout)
            .model_dump()["hits"]] == [h.id for h in want.hits]
    deep = await asyncio.to_thread(cli, postgres_server.url, "--offset", "5000")
    assert deep.returncode == 2 and "after" in deep.stderr


async def test_a_phrase_is_checked_on_a_window_of_articles_holding_its_words(
    corpus: Corpus,
) -> None:
    """Three articles hold both words, two as the phrase: with room for all three in the
    window the answer is exact; with a window of two it is an estimate, found among the
    newest two."""
    pool, _ = corpus
    phrase = store.SearchQuery(q='"climate summit"', collapse=False, facets=True)
    exact = await store.search(pool, phrase, bound=2)
    assert sorted(h.id for h in exact.hits) == ["p-phrase", "p-russia"]
    assert not exact.total_is_estimate and exact.total_articles == 2
    assert exact.facets is not None and exact.facets.sample is None
    narrow = await store.search(pool, phrase, bound=1)
    assert narrow.total_is_estimate and narrow.facets is not None
    assert {h.id for h in narrow.hits} <= {"p-phrase", "p-russia"}
    assert (await store.facets(pool, phrase, bound=1)).sample is not None
    # An excluded phrase is never relaxed (that would exclude more).
    excluded = await store.search(pool, store.SearchQuery(q='climate -"climate summit"',
                                                          collapse=False), bound=1)
    assert "p-phrase" not in {h.id for h in excluded.hits}
