"""Search on a real PostgreSQL over a generated corpus: every filter and facet returns exactly
what a plain-Python oracle expects; phrases, exclusion, stemming, duplicates, paging, order."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import pytest

from shared import store
from shared.messages import ArticleEnriched
from tests.fixtures.search.corpus import (
    MARKER,
    build_corpus,
    expected,
    facet_counts,
    stories,
)
from tests.servers import PostgresServer

Corpus = tuple[asyncpg.Pool, list[ArticleEnriched]]


@pytest.fixture(scope="module")
async def corpus(postgres_server: PostgresServer) -> AsyncIterator[Corpus]:
    pool = await store.connect(postgres_server.url)
    await pool.execute("TRUNCATE articles")
    articles = build_corpus()
    await store.upsert_articles(pool, articles)
    yield pool, articles
    await pool.close()


async def found_ids(pool: asyncpg.Pool, **params: Any) -> list[str]:
    """Every id a search returns, page after page (duplicates not folded unless asked)."""
    params = {"collapse": False, **params}
    ids: list[str] = []
    offset = 0
    while True:
        page = await store.search(pool, store.SearchQuery.model_validate(
            {**params, "limit": 100, "offset": offset}))
        ids += [h.id for h in page.hits]
        offset += 100
        if offset >= page.total:
            return ids


FILTERS: list[dict[str, Any]] = [
    {"language": "en"}, {"language": "DE"}, {"language": "fr"}, {"language": "es"},
    {"source": "zeitung.example.de"}, {"source": "www.news.example.com"},
    {"source": "Le Journal Exemple"},
    {"person": "Emomali Rahmon"}, {"person": "seán o'brien"}, {"person": "Ursula von der Leyen"},
    {"organization": "NATO"}, {"organization": "red cross"},
    {"place": "Tehran"}, {"place": "berlin"},
    {"entity": "Paris"}, {"entity": "Siemens"},
    {"country": "IR"}, {"country": "tj"},
    {"since": date(2024, 3, 1)}, {"until": date(2024, 1, 15)},
    {"since": date(2024, 2, 10), "until": date(2024, 2, 10)},
    {"has_duplicates": True}, {"has_duplicates": False},
    {"language": "en", "country": "DE", "since": date(2024, 2, 1)},
    {"person": "Olaf Scholz", "place": "Paris"},
    {"organization": "European Union", "language": "de", "until": date(2024, 3, 15)},
    {"source": "daily.example.org", "has_duplicates": False, "country": "UA"},
    {"person": "Emmanuel Macron", "organization": "NATO", "country": "FR"},
    # A person filter does not match the same name as an organisation or place.
    {"person": "NATO"}, {"place": "Emomali Rahmon"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in
                                                                    f.items()))
async def test_each_filter_returns_exactly_the_expected_articles(
    corpus: Corpus, filters: dict[str, Any]
) -> None:
    pool, articles = corpus
    want = sorted(a.id for a in expected(articles, **filters))
    assert sorted(await found_ids(pool, **filters)) == want
    with_words = sorted(a.id for a in expected(articles, marker=True, **filters))
    assert sorted(await found_ids(pool, q=MARKER, **filters)) == with_words


async def test_filters_that_match_something_are_not_vacuous(corpus: Corpus) -> None:
    _, articles = corpus
    for filters in FILTERS[:-2]:
        assert expected(articles, **filters), filters
    assert not expected(articles, person="NATO")


@pytest.mark.parametrize("filters", [
    {}, {"q": MARKER}, {"language": "de"}, {"country": "IR", "since": date(2024, 2, 1)},
    {"q": MARKER, "person": "Ebrahim Raisi"}, {"has_duplicates": True},
], ids=str)
async def test_facets_count_exactly(corpus: Corpus, filters: dict[str, Any]) -> None:
    pool, articles = corpus
    query = store.SearchFilters.model_validate(filters)
    got = await store.facets(pool, query, top=100)
    want = facet_counts(expected(articles, marker=bool(filters.get("q")),
                                 **{k: v for k, v in filters.items() if k != "q"}))
    for name, counts in want.items():
        assert {v.value: v.count for v in getattr(got, name)} == counts, name
    assert [v.value for v in got.days] == sorted(want["days"])


async def test_facets_keep_the_top_values_most_frequent_first(corpus: Corpus) -> None:
    pool, articles = corpus
    got = await store.facets(pool, store.SearchFilters(), top=3)
    people = facet_counts(articles)["persons"]
    top = sorted(people.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert [(v.value, v.count) for v in got.persons] == top
    assert len(got.languages) == 3 and len(got.countries) == 3


async def test_search_returns_facets_and_totals_with_the_hits(corpus: Corpus) -> None:
    pool, articles = corpus
    results = await store.search(pool, store.SearchQuery(q=MARKER, language="en", facets=True,
                                                         collapse=False))
    want = expected(articles, marker=True, language="en")
    assert results.total == results.total_articles == len(want)
    assert results.facets is not None
    assert {v.value: v.count for v in results.facets.languages} == {"en": len(want)}


async def test_phrase_exclusion_and_or(corpus: Corpus) -> None:
    pool, _ = corpus
    assert sorted(await found_ids(pool, q='"climate summit"')) == ["p-phrase", "p-russia"]
    assert sorted(await found_ids(pool, q="climate summit")) == ["p-apart", "p-phrase",
                                                                  "p-russia"]
    assert sorted(await found_ids(pool, q="climate summit -russia")) == ["p-apart", "p-phrase"]
    assert sorted(await found_ids(pool, q='"climate summit" -sanctions')) == ["p-phrase"]
    assert sorted(await found_ids(pool, q="postponed OR sanctions")) == ["p-apart", "p-russia"]


async def test_german_and_french_stemming(corpus: Corpus) -> None:
    pool, _ = corpus
    for q in ("Haus", "Häuser", "Präsident", "Wahl", "parlament"):
        assert await found_ids(pool, q=q) == ["p-de"], q
    for q in ("élection", "présidentielle", "cheval", "élections présidentielles"):
        assert await found_ids(pool, q=q) == ["p-fr"], q
    # An English reader's word does not match German text by accident.
    assert await found_ids(pool, q="house") == []


@pytest.mark.parametrize("typed", [
    '"climate', "climate &", "& climate", "climate | ", "!climate", "climate:*",
    "(climate", "climate)", "climate <-> summit", "climate -", "OR climate",
    "climate OR", "'climate'", "climate\\", "climate\x00", "climate;", "climate --",
])
async def test_bad_syntax_degrades_to_a_plain_search(corpus: Corpus, typed: str) -> None:
    pool, _ = corpus
    plain = sorted(await found_ids(pool, q="climate"))
    got = sorted(await found_ids(pool, q=typed.replace("\x00", "")))
    assert got == plain, typed


@pytest.mark.parametrize("typed", [
    "", "   ", "!!!", "&|!()", "-", "- climate", "OR", '""', "<->", ":*", "'",
])
async def test_queries_without_words_never_error(corpus: Corpus, typed: str) -> None:
    pool, _ = corpus
    results = await store.search(pool, store.SearchQuery(q=typed))
    assert results.total >= 0


async def test_duplicates_fold_under_their_first_article(corpus: Corpus) -> None:
    pool, articles = corpus
    want = stories(articles, articles)
    hits = []
    offset = 0
    while offset < len(articles):
        page = await store.search(pool, store.SearchQuery(sort="date", limit=100, offset=offset))
        hits += page.hits
        offset += 100
    assert page.total == len(want) and page.total_articles == len(articles)
    assert {h.id: sorted(s.id for s in h.similar) for h in hits} == want
    folded = [h for h in hits if h.similar]
    assert len(folded) == 11
    assert all(h.duplicate_of is None for h in folded)
    # A duplicate whose first article is not indexed stands on its own.
    assert "p-orphan" in {h.id for h in hits}


async def test_a_duplicate_represents_its_story_when_the_first_article_does_not_match(
    corpus: Corpus,
) -> None:
    pool, articles = corpus
    duplicate = next(a for a in articles if a.duplicate_of and a.duplicate_of.startswith("s"))
    leader = next(a for a in articles if a.id == duplicate.duplicate_of)
    source = duplicate.url.split("/")[2] if duplicate.url else ""
    assert leader.url and source not in leader.url
    results = await store.search(pool, store.SearchQuery(source=source, limit=100))
    found = expected(articles, source=source)
    assert results.total == len(stories(articles, found))
    assert duplicate.id in {h.id for h in results.hits}


async def test_pages_are_stable_and_cover_every_story_once(corpus: Corpus) -> None:
    pool, articles = corpus
    for sort in ("relevance", "date", "oldest"):
        whole = await store.search(pool, store.SearchQuery(q=MARKER, sort=sort, limit=100))
        pages = []
        for offset in range(0, whole.total, 7):
            page = await store.search(pool, store.SearchQuery(q=MARKER, sort=sort, limit=7,
                                                              offset=offset))
            assert page.total == whole.total
            pages += [h.id for h in page.hits]
        assert pages == [h.id for h in whole.hits]
        assert len(set(pages)) == whole.total == len(stories(articles, expected(articles,
                                                                               marker=True)))


async def test_sort_by_date_newest_or_oldest_first(corpus: Corpus) -> None:
    pool, articles = corpus
    want = expected(articles, language="fr")
    dated = sorted((a for a in want if a.published), key=lambda a: (a.published, a.id))
    newest = await found_ids(pool, language="fr", sort="date")
    oldest = await found_ids(pool, language="fr", sort="oldest")
    undated = sorted(a.id for a in want if a.published is None)
    assert newest[:len(dated)] == [a.id for a in sorted(
        dated, key=lambda a: (-a.published.timestamp(), a.id))]  # type: ignore[union-attr]
    assert oldest[:len(dated)] == [a.id for a in dated]
    assert sorted(newest[len(dated):]) == sorted(oldest[len(dated):]) == undated


async def test_snippets_highlight_and_escape(corpus: Corpus) -> None:
    pool, _ = corpus
    hits = (await store.search(pool, store.SearchQuery(q="quokka", collapse=False))).hits
    assert {h.id for h in hits} == {"p-xss", "p-orphan"}
    xss = next(h for h in hits if h.id == "p-xss")
    assert "<mark>quokka</mark>" in xss.snippet
    assert "<script" not in xss.snippet and "&amp;" in xss.snippet
    assert xss.title.startswith("<img")  # the title is data; the page renders it as text


def cli(database_url: str, *args: str) -> "subprocess.CompletedProcess[str]":
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "services.cli", "search", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


async def test_cli_search_takes_the_same_filters(corpus: Corpus,
                                                 postgres_server: PostgresServer) -> None:
    _, articles = corpus
    done = await asyncio.to_thread(
        cli, postgres_server.url, MARKER, "--language", "de", "--place", "Berlin",
        "--no-collapse", "--limit", "100", "--json")
    assert done.returncode == 0, done.stderr
    want = expected(articles, marker=True, language="de", place="Berlin")
    assert sorted(h["id"] for h in json.loads(done.stdout)["hits"]) == sorted(a.id for a in want)
    text = await asyncio.to_thread(cli, postgres_server.url, "--has-duplicates", "--facets",
                                   "--sort", "date")
    assert text.returncode == 0, text.stderr
    assert "1 similar:" in text.stdout and "languages: en (" in text.stdout
    bad = await asyncio.to_thread(cli, postgres_server.url, "--country", "IRN")
    assert bad.returncode == 2 and "country" in bad.stderr
