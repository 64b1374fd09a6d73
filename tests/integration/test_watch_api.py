"""The API's /watches (in process, on a real PostgreSQL): changes need the token (off without
one), reading stays open, bad watches are 422 with the reason, and the Atom feed is valid
(feedparser), newest first, keyed, and answers 304 to its ETag."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import feedparser
import httpx
import pytest

from services.api.main import create_app
from services.watcher.match import Matcher
from shared import store, watches
from shared.messages import ArticleEnriched, ArticleIndexed
from shared.settings import Settings
from tests.servers import PostgresServer

TOKEN = "t0ken-for-tests"  # noqa: S105 -- a test's API token
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        yield client


@pytest.fixture
async def clean_db(postgres_server: PostgresServer) -> str:
    pool = await watches.connect(postgres_server.url)
    await pool.execute("TRUNCATE watches CASCADE")
    await pool.execute("TRUNCATE articles")
    await pool.close()
    return postgres_server.url


@pytest.fixture
async def api(clean_db: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=clean_db, api_token=TOKEN,
                        public_url="https://news.example.org/")
    async for client in client_for(settings):
        yield client


@pytest.fixture
async def api_without_token(clean_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(Settings(database_url=clean_db)):
        yield client


TJ = {"name": "tajik", "filters": {"q": "Rahmon", "country": "TJ"}}


async def test_changes_are_off_without_a_server_token(api_without_token: httpx.AsyncClient) -> None:
    answer = await api_without_token.post("/watches", json=TJ, headers=AUTH)
    assert answer.status_code == 403 and "NEWSFLOW_API_TOKEN" in answer.json()["detail"]
    assert (await api_without_token.delete("/watches/x", headers=AUTH)).status_code == 403
    listed = (await api_without_token.get("/watches")).json()
    assert listed == {"writable": False, "watches": []}
    assert (await api_without_token.get("/search", params={"q": "x"})).status_code == 200


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
async def test_changes_need_the_token(api: httpx.AsyncClient, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    answer = await api.post("/watches", json=TJ, headers=headers)
    assert answer.status_code == 401
    assert (await api.get("/watches")).json()["watches"] == []


async def test_add_list_show_remove(api: httpx.AsyncClient) -> None:
    added = await api.post("/watches", json=TJ, headers=AUTH)
    assert added.status_code == 201, added.text
    watch = added.json()
    assert len(watch["secret"]) >= 24
    assert watch["feed_url"].startswith(f"https://news.example.org/watches/{watch['id']}/feed.atom?key=")
    open_list = (await api.get("/watches")).json()
    assert open_list["writable"] is True
    [shown] = open_list["watches"]
    assert shown["name"] == "tajik" and shown["filters"] == {"q": "Rahmon", "country": "TJ"}
    assert "feed_url" not in shown and "secret" not in shown and shown["matches"] == {
        "day": 0, "week": 0}
    [full] = (await api.get("/watches", headers=AUTH)).json()["watches"]
    assert full["feed_url"] == watch["feed_url"] and "secret" not in full
    one = (await api.get(f"/watches/{watch['id']}")).json()
    assert one["recent"] == [] and one["name"] == "tajik"
    assert (await api.get("/watches/tajik")).json()["id"] == watch["id"]
    assert (await api.delete("/watches/tajik", headers=AUTH)).status_code == 204
    assert (await api.delete("/watches/tajik", headers=AUTH)).status_code == 404
    assert (await api.get(f"/watches/{watch['id']}")).status_code == 404


@pytest.mark.parametrize(("body", "reason"), [
    ({"name": "x", "filters": {"q": "x", "country": "TJK"}}, "country"),
    ({"name": "x", "filters": {"q": "x"}, "webhook": "ftp://example.com/"}, "not http"),
    ({"name": "x", "filters": {"q": "x"}, "webhook": "http://127.0.0.1/"}, "loopback"),
    ({"name": "x", "filters": {}}, "needs words"),
    ({"name": "x", "filters": {"q": "-- !!"}}, "no searchable words"),
    ({"name": "x", "filters": {"q": "x"}, "colour": "red"}, "colour"),
])
async def test_bad_watches_are_422_with_the_reason(
    api: httpx.AsyncClient, body: dict[str, object], reason: str
) -> None:
    answer = await api.post("/watches", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert reason in answer.text


async def test_the_atom_feed(api: httpx.AsyncClient, clean_db: str) -> None:
    watch = (await api.post("/watches", json=TJ, headers=AUTH)).json()
    feed_path = watch["feed_url"].removeprefix("https://news.example.org")
    empty = await api.get(feed_path)
    assert empty.status_code == 200
    assert feedparser.parse(empty.content).bozo == 0
    # Two matching articles, matched an hour apart, and one that does not match.
    pool = await watches.connect(clean_db)
    try:
        await store.upsert_articles(pool, [ArticleEnriched(
            id=f"a{i}", url=f"https://news.example.com/a{i}", title=f"Rahmon & co, part {i}",
            text=f"Rahmon spoke in Dushanbe <b>{i}</b>.", language="en", countries=country,
            published=datetime(2024, 5, i, tzinfo=UTC), summary=f"Summary {i} <i>")
            for i, country in ((1, ["TJ"]), (2, ["TJ", "IR"]), (3, ["FR"]))])
        matcher = Matcher(pool)
        t0 = datetime.now(UTC)
        for i in (1, 2, 3):
            await matcher.matches(ArticleIndexed(id=f"a{i}", indexed_at=t0))
        await pool.execute("UPDATE watch_matches SET matched_at = $1 WHERE article_id = 'a1'",
                           t0 - timedelta(hours=1))
    finally:
        await pool.close()
    answer = await api.get(feed_path)
    assert answer.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(answer.content)
    assert parsed.bozo == 0, parsed.bozo_exception
    assert parsed.version == "atom10"
    assert parsed.feed.title == "newsflow watch: tajik"
    assert [e.link for e in parsed.entries] == ["https://news.example.com/a2",
                                                "https://news.example.com/a1"]
    assert parsed.entries[0].title == "Rahmon & co, part 2"
    assert parsed.entries[0].summary == "Summary 2 <i>"  # text, not markup
    assert {t.term for t in parsed.entries[0].tags} >= {"TJ", "IR"}
    tested = (await api.get(f"/watches/{watch['id']}/test")).json()
    assert [h["id"] for h in tested["hits"]] == ["a2", "a1"]  # newest first
    assert (await api.get("/watches/nope/test")).status_code == 404
    etag = answer.headers["etag"]
    again = await api.get(feed_path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert (await api.get(feed_path, headers={"If-None-Match": '"other"'})).status_code == 200
    # The key is the secret: a wrong or missing one finds nothing, like an unknown watch.
    assert (await api.get(f"/watches/{watch['id']}/feed.atom?key=wrong")).status_code == 404
    assert (await api.get(f"/watches/{watch['id']}/feed.atom")).status_code == 422
    assert (await api.get("/watches/tajik/feed.atom", params={
        "key": feed_path.split("key=")[1]})).status_code == 404


async def test_the_search_page_loads_the_watch_script(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    assert 'src="static/watches.js"' in page.text and 'id="watches"' in page.text
    assert "'self'" in page.headers["content-security-policy"].split("script-src")[1]
    script = await api.get("/static/watches.js")
    assert script.status_code == 200 and "watch-this" in script.text
