"""The search store on a real PostgreSQL: upserts, ranking, filters, snippets, languages."""

from datetime import UTC, date, datetime

import asyncpg
import pytest

from shared import store
from shared.messages import ArticleEnriched, Entity
from tests.servers import PostgresServer


def article(n: int, **fields: object) -> ArticleEnriched:
    base: dict[str, object] = {
        "id": f"a{n}",
        "url": f"https://news{n % 2}.example.com/story/{n}",
        "title": f"Story {n}",
        "text": f"Body of story {n}.",
        "language": "en",
        "published": datetime(2024, 5, n % 28 + 1, 12, tzinfo=UTC),
    }
    return ArticleEnriched.model_validate(base | fields)


async def test_upsert_is_idempotent_and_updates_in_place(db: asyncpg.Pool) -> None:
    first = article(1, title="Tajikistan and Iran")
    await store.upsert_articles(db, [first, first])
    await store.upsert_articles(db, [article(1, title="Tajikistan and Iran, updated")])
    rows = await db.fetch("SELECT id, title FROM articles")
    assert [(r["id"], r["title"]) for r in rows] == [("a1", "Tajikistan and Iran, updated")]


async def test_unchanged_content_is_not_rewritten(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [article(1)])
    before = await db.fetchval("SELECT indexed_at FROM articles")
    again = article(1).model_copy(update={"trace": {"indexed": datetime.now(UTC)}})
    await store.upsert_articles(db, [again])
    assert await db.fetchval("SELECT indexed_at FROM articles") == before


async def test_search_ranks_title_over_body_and_highlights(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [
        article(1, title="Weather report", text="Rahmon was mentioned once in passing."),
        article(2, title="Rahmon travels to Tehran", text="The president Rahmon visited Iran."),
        article(3, title="Unrelated", text="Nothing to see."),
    ])
    results = await store.search(db, store.SearchQuery(q="Rahmon"))
    assert results.total == 2
    assert [h.id for h in results.hits] == ["a2", "a1"]
    assert "<mark>Rahmon</mark>" in results.hits[0].snippet


async def test_filters_combine(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [
        article(1, countries=["TJ", "IR"], entities=[Entity(name="Emomali Rahmon", type="person")]),
        article(2, countries=["IR"], language="de", text="Der Präsident besuchte Teheran."),
        article(3, countries=["UA"], published=datetime(2023, 1, 1, tzinfo=UTC)),
    ])

    async def ids(**filters: object) -> list[str]:
        found = await store.search(db, store.SearchQuery.model_validate(filters))
        return sorted(h.id for h in found.hits)

    assert await ids(country="ir") == ["a1", "a2"]
    assert await ids(country="IR", language="de") == ["a2"]
    assert await ids(entity="emomali rahmon") == ["a1"]
    assert await ids(source="news1.example.com") == ["a1", "a3"]
    assert await ids(since=date(2024, 1, 1)) == ["a1", "a2"]
    assert await ids(until=date(2023, 12, 31)) == ["a3"]
    assert await ids(country="FR") == []


async def test_each_article_is_matched_in_its_own_language(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [
        article(1, language="de", title="Die Präsidenten", text="Die Präsidenten trafen sich."),
        article(2, language="fr", title="Les élections", text="Les élections présidentielles."),
        article(3, language="xx", title="Zzz", text="Plain words here."),
    ])
    assert [h.id for h in (await store.search(db, store.SearchQuery(q="Präsident"))).hits] == ["a1"]
    assert [h.id for h in (await store.search(db, store.SearchQuery(q="élection"))).hits] == ["a2"]
    assert [h.id for h in (await store.search(db, store.SearchQuery(q="words"))).hits] == ["a3"]


async def test_web_search_syntax_and_hostile_input_never_error(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [
        article(1, text="Iran and Tajikistan signed agreements."),
        article(2, text="Iran and Russia met."),
    ])
    phrase = await store.search(db, store.SearchQuery(q='"Iran and Tajikistan"'))
    assert [h.id for h in phrase.hits] == ["a1"]
    excluded = await store.search(db, store.SearchQuery(q="Iran -Russia"))
    assert [h.id for h in excluded.hits] == ["a1"]
    for hostile in ("'; DROP TABLE articles; --", "(((", "a & | ! b", "\\", '"unclosed'):
        await store.search(db, store.SearchQuery(q=hostile, source=hostile, entity=hostile))
    assert await db.fetchval("SELECT count(*) FROM articles") == 2


async def test_pagination_and_totals(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [article(n, text="common word") for n in range(1, 26)])
    first = await store.search(db, store.SearchQuery(q="common", limit=10))
    last = await store.search(db, store.SearchQuery(q="common", limit=10, offset=20))
    beyond = await store.search(db, store.SearchQuery(q="common", limit=10, offset=40))
    assert (first.total, len(first.hits)) == (25, 10)
    assert (last.total, len(last.hits)) == (25, 5)
    assert (beyond.total, beyond.hits) == (25, [])
    assert not {h.id for h in first.hits} & {h.id for h in last.hits}


async def test_get_and_export(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [article(n) for n in range(1, 4)])
    got = await store.get_article(db, "a2")
    assert got is not None and got["title"] == "Story 2" and got["entities"] == []
    assert await store.get_article(db, "missing") is None
    assert [a["id"] async for a in store.export_articles(db, batch=2)] == ["a1", "a2", "a3"]


async def test_recency_boost_is_configurable(db: asyncpg.Pool) -> None:
    recent = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await store.upsert_articles(db, [
        article(1, title="Flood warning", text="The flood warning was lifted.",
                published=datetime(2020, 1, 1, tzinfo=UTC)),
        article(2, title="Weather", text="A flood is expected.", published=recent),
    ])

    async def order(**ranking: object) -> list[str]:
        query = store.SearchQuery.model_validate({"q": "flood", **ranking})
        return [h.id for h in (await store.search(db, query)).hits]

    assert await order(recency=0) == ["a1", "a2"]
    assert await order(recency=10, half_life_days=30) == ["a2", "a1"]
    assert await order(sort="date") == ["a2", "a1"]


async def test_entities_are_filtered_by_type(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [
        article(1, entities=[Entity(name="Jordan", type="person")]),
        article(2, entities=[Entity(name="Jordan", type="place", country="JO")]),
    ])

    async def ids(**filters: object) -> list[str]:
        found = await store.search(db, store.SearchQuery.model_validate(filters))
        return sorted(h.id for h in found.hits)

    assert await ids(person="jordan") == ["a1"]
    assert await ids(place="JORDAN") == ["a2"]
    assert await ids(organization="Jordan") == []
    assert await ids(entity="Jordan") == ["a1", "a2"]


async def test_read_only_pools_refuse_writes(postgres_server: PostgresServer,
                                            db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [article(1)])
    reader = await store.connect(postgres_server.url, read_only=True)
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await reader.execute("DELETE FROM articles")
        assert (await store.search(reader, store.SearchQuery())).total == 1
    finally:
        await reader.close()


async def test_an_old_table_gains_the_entity_columns(postgres_server: PostgresServer,
                                                    db: asyncpg.Pool) -> None:
    await db.execute("DROP TABLE articles")
    await db.execute(store.SCHEMA)  # the table as the first release created it
    await db.execute(
        "INSERT INTO articles (id, title, content_hash, entities) VALUES ('old', 'Old', 'h', $1)",
        '[{"name": "Emomali Rahmon", "type": "person", "count": 2, "country": null}]',
    )
    pool = await store.connect(postgres_server.url)
    try:
        found = await store.search(pool, store.SearchQuery(person="emomali rahmon"))
        assert [h.id for h in found.hits] == ["old"]
        assert (await store.get_article(pool, "old") or {})["persons"] == ["Emomali Rahmon"]
    finally:
        await pool.close()


async def test_credits_are_stored_filtered_and_counted(db: asyncpg.Pool) -> None:
    await store.upsert_articles(db, [
        article(1, credits=["dpa"], authors=["Jane Doe"]),
        article(2, credits=["Deutsche Presse-Agentur"]),
        article(3, credits=["Reuters"]),
        article(4),
    ])

    async def ids(**filters: object) -> list[str]:
        found = await store.search(db, store.SearchQuery.model_validate(filters))
        return sorted(h.id for h in found.hits)

    # An agency is found by its short or full name, either way round; case does not matter.
    assert await ids(credit="dpa") == ["a1", "a2"]
    assert await ids(credit="DEUTSCHE PRESSE-AGENTUR") == ["a1", "a2"]
    assert await ids(credit="reuters", q="story") == ["a3"]
    assert await ids(credit="AFP") == []
    assert await ids(credit="") == ["a1", "a2", "a3", "a4"]  # blank: no filter
    counted = await store.facets(db, store.FacetQuery())
    assert {(v.value, v.count) for v in counted.credits} == {
        ("dpa", 1), ("Deutsche Presse-Agentur", 1), ("Reuters", 1)}
    got = await store.get_article(db, "a1") or {}
    assert (got["authors"], got["credits"]) == (["Jane Doe"], ["dpa"])
    assert "credit_keys" not in got


async def test_rows_from_before_credits_are_read_with_none(postgres_server: PostgresServer,
                                                           db: asyncpg.Pool) -> None:
    await db.execute("DROP TABLE articles")
    await db.execute(store.SCHEMA)  # without the later columns
    await db.execute("INSERT INTO articles (id, title, content_hash) VALUES ('old', 'Old', 'h')")
    pool = await store.connect(postgres_server.url)
    try:
        assert (await store.get_article(pool, "old") or {})["credits"] == []
        assert [h.id for h in (await store.search(pool, store.SearchQuery())).hits] == ["old"]
        assert (await store.search(pool, store.SearchQuery(credit="dpa"))).total == 0
    finally:
        await pool.close()
