"""The search API over HTTP (in process, on a real PostgreSQL): every endpoint, clear 4xx errors,
hostile input in every parameter, OpenAPI, and the search page."""

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from services.api.main import create_app
from shared import store
from shared.settings import Settings
from tests.fixtures.search.corpus import MARKER, build_corpus, expected, facet_counts
from tests.servers import PostgresServer

HOSTILE = [
    "'; DROP TABLE articles; --", "' OR '1'='1", "\" OR 1=1 --", "$1", "%' OR 1=1 --",
    "a'); DELETE FROM articles; --", "\\'", "\u0000", "😀' UNION SELECT * FROM pg_user --",
    "<script>alert(1)</script>", "x" * 199, "(((", "a & | ! b",
]
TEXT_PARAMS = ("q", "source", "entity", "person", "organization", "place", "credit")
STRICT_PARAMS = ("language", "country", "since", "until", "has_duplicates", "sort", "limit",
                 "offset", "recency", "half_life_days", "collapse", "facets")


@pytest.fixture(scope="module")
async def api(postgres_server: PostgresServer) -> AsyncIterator[httpx.AsyncClient]:
    pool = await store.connect(postgres_server.url)
    await pool.execute("TRUNCATE articles")
    await store.upsert_articles(pool, build_corpus())
    await pool.close()
    app = create_app(Settings(database_url=postgres_server.url))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        yield client


async def count_articles(api: httpx.AsyncClient) -> int:
    return int((await api.get("/health")).json()["articles"])


async def test_search_with_every_filter(api: httpx.AsyncClient) -> None:
    corpus = build_corpus()
    params: dict[str, Any] = {"q": MARKER, "language": "en", "since": "2024-01-15",
                              "until": "2024-03-20", "collapse": "false", "limit": 100}
    body = (await api.get("/search", params=params)).json()
    want = expected(corpus, marker=True, language="en", since=_day("2024-01-15"),
                    until=_day("2024-03-20"))
    assert sorted(h["id"] for h in body["hits"]) == sorted(a.id for a in want)
    assert body["total"] == len(want) and body["facets"] is None
    one = (await api.get("/search", params={"person": "Seán O'Brien", "country": "IR",
                                            "has_duplicates": "false", "limit": 100})).json()
    want = expected(corpus, person="Seán O'Brien", country="IR", has_duplicates=False)
    assert sorted(h["id"] for h in one["hits"]) == sorted(a.id for a in want) != []


def _day(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


async def test_search_folds_duplicates_and_returns_facets(api: httpx.AsyncClient) -> None:
    body = (await api.get("/search", params={"facets": "true", "limit": 100,
                                             "sort": "date"})).json()
    assert body["total_articles"] == 247 and body["total"] == 247 - 11
    assert sum(len(h["similar"]) for h in body["hits"]) <= 11
    english = len(expected(build_corpus(), language="en"))
    assert body["facets"]["languages"][0] == {"value": "en", "count": english}


async def test_facets_endpoint(api: httpx.AsyncClient) -> None:
    corpus = build_corpus()
    body = (await api.get("/facets", params={"language": "de", "top": 100})).json()
    want = facet_counts(expected(corpus, language="de"))
    assert {v["value"]: v["count"] for v in body["persons"]} == want["persons"]
    assert {v["value"]: v["count"] for v in body["days"]} == want["days"]
    assert (await api.get("/facets", params={"limit": 5})).status_code == 422


async def test_article_and_health(api: httpx.AsyncClient) -> None:
    got = (await api.get("/articles/s001")).json()
    assert got["id"] == "s001" and "entity_keys" not in got and "persons" in got
    missing = await api.get("/articles/nope")
    assert missing.status_code == 404 and missing.json()["detail"] == "no article 'nope'"
    assert (await api.get("/health")).json() == {"status": "ok", "articles": 247,
                                                 "articles_is_estimate": False}


@pytest.mark.parametrize(("params", "reason"), [
    ({"language": "english"}, "String should match pattern"),
    ({"country": "IRN"}, "String should match pattern"),
    ({"since": "2024-13-01"}, "valid date"),
    ({"since": "2024-03-01", "until": "2024-02-01"}, "since must be on or before until"),
    ({"limit": 0}, "greater than or equal to 1"),
    ({"limit": 101}, "less than or equal to 100"),
    ({"offset": -1}, "greater than or equal to 0"),
    ({"sort": "random"}, "'relevance', 'date' or 'oldest'"),
    ({"has_duplicates": "maybe"}, "valid boolean"),
    ({"recency": -1}, "greater than or equal to 0"),
    ({"q": "x" * 501}, "at most 500 characters"),
    ({"contry": "IR"}, "Extra inputs are not permitted"),
])
async def test_invalid_input_is_a_clear_422(
    api: httpx.AsyncClient, params: dict[str, Any], reason: str
) -> None:
    response = await api.get("/search", params=params)
    assert response.status_code == 422
    assert reason in str(response.json()["detail"])


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_input_in_every_parameter_is_harmless(
    api: httpx.AsyncClient, hostile: str
) -> None:
    before = await count_articles(api)
    for param in TEXT_PARAMS:
        response = await api.get("/search", params={param: hostile, "facets": "true"})
        assert response.status_code in (200, 422), (param, response.text)
        if response.status_code == 200 and param != "q" and hostile.strip("\x00"):
            assert response.json()["total"] == 0, param
        facets = await api.get("/facets", params={param: hostile})
        assert facets.status_code in (200, 422), (param, facets.text)
    for param in STRICT_PARAMS:
        response = await api.get("/search", params={param: hostile})
        # NUL characters are dropped from text, and an empty filter is no filter.
        allowed = (422,) if hostile.strip("\x00") else (200, 422)
        assert response.status_code in allowed, (param, response.text)
    path = quote(hostile[:150], safe="")
    assert (await api.get(f"/articles/{path}")).status_code in (404, 422)
    assert await count_articles(api) == before


async def test_openapi_documents_every_endpoint_and_parameter(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert set(spec["paths"]) == {"/search", "/facets", "/articles/{article_id}", "/health",
                                  "/watches", "/watches/{watch_id}",
                                  "/watches/{watch_id}/feed.atom", "/watches/{watch_id}/test"}
    params = {p["name"]: p for p in spec["paths"]["/search"]["get"]["parameters"]}
    assert set(params) >= {*TEXT_PARAMS, *STRICT_PARAMS}
    assert all(params[name].get("description") for name in TEXT_PARAMS)
    assert list(spec["paths"]["/search"]) == ["get"]  # read only


async def test_the_search_page_is_served(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="q"' in page.text and 'src="static/search.js"' in page.text
    assert "fetch(" in (await api.get("/static/search.js")).text
    assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_the_api_started_before_postgresql_waits_for_it() -> None:
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="newsflow-pg-")))
    await asyncio.to_thread(server.start)  # the cluster and its database made, then down
    await asyncio.to_thread(server.stop)
    app = create_app(Settings(database_url=server.url, startup_wait_s=60))

    async def serve() -> dict[str, Any]:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            body: dict[str, Any] = (await client.get("/health")).json()
            return body

    started = asyncio.create_task(serve())
    await asyncio.sleep(1.5)
    assert not started.done()  # waiting, not exited
    await asyncio.to_thread(server.start)
    try:
        assert await asyncio.wait_for(started, 30) == {"status": "ok", "articles": 0,
                                                       "articles_is_estimate": False}
    finally:
        await asyncio.to_thread(server.stop)
