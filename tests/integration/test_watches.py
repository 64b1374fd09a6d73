"""Watches on a real PostgreSQL: the matcher returns exactly what `newsflow search` returns on a
corpus; bad watches are refused at add; copies and re-indexing do not alert twice."""

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from services.watcher.match import _ARTICLE, Matcher, WatchIndex, facts
from shared import store, watches
from shared.messages import ArticleEnriched, ArticleIndexed
from tests.fixtures.search.corpus import MARKER, build_corpus
from tests.servers import PostgresServer


async def clean(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE watches CASCADE")
    await pool.execute("TRUNCATE articles")


@pytest.fixture
async def wdb(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Pool]:
    pool = await watches.connect(postgres_server.url)
    await clean(pool)
    yield pool
    await pool.close()


async def found_ids(pool: asyncpg.Pool, **params: Any) -> set[str]:
    """Every id `newsflow search` returns for these words and filters (duplicates unfolded)."""
    ids: set[str] = set()
    offset = 0
    while True:
        page = await store.search(pool, store.SearchQuery.model_validate(
            {**params, "collapse": False, "limit": 100, "offset": offset}))
        ids |= {h.id for h in page.hits}
        offset += 100
        if offset >= page.total:
            return ids


QUERIES = [
    MARKER, "climate summit", '"climate summit"', "climate summit -russia",
    '"climate summit" -sanctions', "postponed OR sanctions", "Haus", "Häuser", "Präsident",
    "Wahl", "élections présidentielles", "cheval", "house", "the", "-zephyrite",
    f"{MARKER} OR quokka", '"the summit on climate"', "Rahmon", "Rahmon Raisi",
    "market -weather", '"market report"', "market OR bridge -river", "climate:*", "!climate",
    "(climate", "climate <-> summit", "'climate'", "o'brien",
]
FILTERS: list[dict[str, Any]] = [
    {}, {"language": "en"}, {"language": "DE"}, {"source": "zeitung.example.de"},
    {"source": "Le Journal Exemple"}, {"person": "Emomali Rahmon"},
    {"organization": "NATO"}, {"place": "berlin"}, {"entity": "Paris"}, {"country": "IR"},
    {"country": "tj"}, {"since": date(2024, 3, 1)}, {"until": date(2024, 1, 15)},
    {"language": "en", "country": "DE", "since": date(2024, 2, 1)},
    {"person": "Olaf Scholz", "place": "Paris"},
]


async def test_the_matcher_returns_what_search_returns(wdb: asyncpg.Pool) -> None:
    articles = build_corpus()
    await store.upsert_articles(wdb, articles)
    specs = [{"q": q, **f} for q, f in itertools.product(QUERIES, FILTERS[:4])]
    specs += [{"q": q, **f} for q, f in itertools.product([MARKER, "", "climate OR market"],
                                                          FILTERS[4:])]
    specs = [s for s in specs if s.get("q") or len(s) > 1]
    saved = [watches.Watch(
        id=f"w{i}", name=f"w{i}", filters=watches.WatchFilters.model_validate(s), webhook=None,
        format="json", secret="x" * 16, feed_key="k", every_copy=False,
        created_at=datetime.now(UTC)) for i, s in enumerate(specs)]
    matcher = Matcher(wdb)
    index = WatchIndex.of(saved, matcher.compile_queries)
    got: dict[str, set[str]] = {w.id: set() for w in saved}
    for a in articles:
        row = await wdb.fetchrow(_ARTICLE, a.id)
        for w in await index.match(facts(row), matcher.phrase_check):
            got[w.id].add(a.id)
    mismatches = []
    for w, spec in zip(saved, specs, strict=True):
        want = await found_ids(wdb, **spec)
        if got[w.id] != want:
            mismatches.append((spec, sorted(got[w.id] - want), sorted(want - got[w.id])))
    assert not mismatches, mismatches[:5]
    # Not vacuous: most watches match something, and some match nothing.
    assert sum(bool(v) for v in got.values()) > len(saved) / 3
    assert any(not v for v in got.values())


def spec(name: str = "w", **values: Any) -> watches.WatchSpec:
    filters = {k: values.pop(k) for k in list(values) if k not in
               ("webhook", "format", "secret", "every_copy")}
    return watches.WatchSpec.model_validate({"name": name, "filters": filters, **values})


@pytest.mark.parametrize(("values", "message"), [
    ({"q": "... --- &&"}, "no searchable words"),
    ({"q": '"-" !'}, "no searchable words"),
    ({}, "needs words or at least one filter"),
    ({"q": "x", "webhook": "ftp://example.com/in"}, "not http or https"),
    ({"q": "x", "webhook": "file:///etc/passwd"}, "not http or https"),
    ({"q": "x", "webhook": "http://127.0.0.1:8080/in"}, "loopback"),
    ({"q": "x", "webhook": "http://169.254.169.254/latest"}, "link-local"),
    ({"q": "x", "webhook": "http://[::ffff:10.0.0.1]/in"}, "private"),
    ({"q": "x", "webhook": "http://localhost/in"}, "loopback"),
    ({"q": "x", "webhook": "http:///nohost"}, "no host"),
])
async def test_bad_watches_are_refused_at_add(
    wdb: asyncpg.Pool, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(watches.WatchError, match=message):
        await watches.create_watch(wdb, spec(**values))
    assert await watches.list_watches(wdb) == []


@pytest.mark.parametrize(("values", "field"), [
    ({"q": "x", "country": "TJK"}, "country"), ({"q": "x", "language": "english!"}, "language"),
    ({"q": "x", "has_duplicates": True}, "has_duplicates"),
    ({"q": "x", "since": date(2024, 2, 1), "until": date(2024, 1, 1)}, "since"),
    ({"q": "x", "colour": "red"}, "colour"), ({"q": "x" * 501}, "q"),
    ({"q": "x", "format": "xml"}, "format"), ({"q": "x", "secret": "short"}, "secret"),
])
def test_malformed_filters_are_refused_with_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(**values)
    assert field in watches.describe_errors(caught.value)


async def test_add_list_get_remove_and_a_generated_secret(wdb: asyncpg.Pool) -> None:
    first = await watches.create_watch(wdb, spec("tajik", q="Rahmon", country="TJ"))
    assert len(first.secret) >= 24 and len(first.feed_key) >= 24
    given = await watches.create_watch(wdb, spec("iran", q="Raisi", secret="s" * 20,
                                                 webhook="http://127.0.0.1:9/in"),
                                       allow_private=True)
    assert given.secret == "s" * 20
    with pytest.raises(watches.WatchError, match="exists already"):
        await watches.create_watch(wdb, spec("tajik", q="other"))
    assert [w.name for w in await watches.list_watches(wdb)] == ["iran", "tajik"]
    assert (await watches.get_watch(wdb, first.id)) == first
    assert (await watches.get_watch(wdb, "tajik")) == first
    shown = first.public("http://news.example/")
    assert "secret" not in shown and shown["feed_url"].startswith(
        f"http://news.example/watches/{first.id}/feed.atom?key=")
    assert await watches.remove_watch(wdb, "tajik")
    assert not await watches.remove_watch(wdb, "tajik")
    assert [w.name for w in await watches.list_watches(wdb)] == ["iran"]


def enriched(article_id: str, text: str, **more: Any) -> ArticleEnriched:
    return ArticleEnriched(id=article_id, url=f"https://news.example.com/{article_id}",
                           title=f"About {article_id}", text=text, language="en",
                           countries=["TJ"], published=datetime(2024, 5, 2, tzinfo=UTC),
                           **more)


def indexed(article_id: str, at: datetime) -> ArticleIndexed:
    return ArticleIndexed(id=article_id, url=f"https://news.example.com/{article_id}",
                          indexed_at=at)


async def test_copies_and_reindexing_alert_once_redelivery_alerts_again(
    wdb: asyncpg.Pool
) -> None:
    once = await watches.create_watch(wdb, spec("once", q="Rahmon", country="TJ"))
    every = await watches.create_watch(wdb, spec("every", q="Rahmon", every_copy=True))
    await watches.create_watch(wdb, spec("france", q="Rahmon", country="FR"))
    matcher = Matcher(wdb)
    text = "President Emomali Rahmon met the delegation in Dushanbe on Tuesday."
    await store.upsert_articles(wdb, [enriched("orig", text)])
    t0 = datetime(2024, 5, 2, 12, tzinfo=UTC)
    first = await matcher.matches(indexed("orig", t0))
    assert sorted((m.watch_name, m.id, m.key) for m in first) == [
        ("every", "orig", f"{every.id}:orig"), ("once", "orig", f"{once.id}:orig")]
    # The same event delivered again (the watcher died before handing it on): told again.
    assert len(await matcher.matches(indexed("orig", t0))) == 2
    # Indexed again later (republished, unchanged or updated): not a new match.
    assert await matcher.matches(indexed("orig", t0 + timedelta(hours=1))) == []
    # A near-duplicate: only the watch that asks for every copy is told.
    await store.upsert_articles(wdb, [enriched("copy", text + " Copied.", duplicate_of="orig")])
    copy = await matcher.matches(indexed("copy", t0 + timedelta(hours=2)))
    assert [(m.watch_name, m.story) for m in copy] == [("every", "orig")]
    # An article the store does not hold (the fetcher skipped it): nothing.
    assert await matcher.matches(indexed("absent", t0)) == []
    counts = await watches.match_counts(wdb)
    assert counts[once.id]["day"] == 1 and counts[every.id]["week"] == 2
    recent = await watches.recent_matches(wdb, every.id)
    assert [m.article_id for m in recent] == ["copy", "orig"]


async def test_the_index_follows_changes_to_the_watches(wdb: asyncpg.Pool) -> None:
    matcher = Matcher(wdb)
    await store.upsert_articles(wdb, [enriched("a1", "Rahmon in Dushanbe.")])
    t0 = datetime(2024, 5, 2, 12, tzinfo=UTC)
    assert await matcher.matches(indexed("a1", t0)) == []
    added = await watches.create_watch(wdb, spec("late", q="Dushanbe"))
    await store.upsert_articles(wdb, [enriched("a2", "Back in Dushanbe.")])
    assert [m.watch_id for m in await matcher.matches(indexed("a2", t0))] == [added.id]
    await watches.remove_watch(wdb, "late")
    await store.upsert_articles(wdb, [enriched("a3", "Dushanbe again.")])
    assert await matcher.matches(indexed("a3", t0)) == []
