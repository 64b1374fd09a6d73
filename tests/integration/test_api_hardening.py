"""The API's edges on a real PostgreSQL: every out-of-range parameter is a 422 (never a 500),
every response carries the security headers, the page runs no inline script, and URLs never
show their credentials."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.api.main import create_app
from shared import store
from shared.messages import ArticleEnriched, ArticleSubmitted
from shared.settings import Settings
from tests.servers import PostgresServer

OLD = datetime(1, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
async def api(postgres_server: PostgresServer) -> AsyncIterator[httpx.AsyncClient]:
    pool = await store.connect(postgres_server.url)
    await pool.execute("TRUNCATE articles")
    submitted = ArticleSubmitted(url="https://admin:s3cret@news.example.com/a")
    await store.upsert_articles(pool, [
        ArticleEnriched(id=submitted.id, url=submitted.url, title="Rahmon in Tehran",
                        text="Rahmon met officials.", language="en",
                        canonical_url="https://u:p@news.example.com/a",
                        final_url="https://u:p@news.example.com/a",
                        published=datetime(2024, 5, 1, tzinfo=UTC)),
        # An ancient date, as a bad page may claim: the recency boost must not underflow.
        ArticleEnriched(id="old", title="Rahmon long ago", text="Rahmon.", language="en",
                        published=OLD),
    ])
    await pool.close()
    app = create_app(Settings(database_url=postgres_server.url))

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("a bug")

    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://api",
    ) as client:
        yield client


@pytest.mark.parametrize(("params", "reason"), [
    ({"half_life_days": "1e-300"}, "greater than or equal to 0.01"),
    ({"half_life_days": "0"}, "greater than or equal to 0.01"),
    ({"half_life_days": "nan"}, "half_life_days"),
    ({"half_life_days": "inf"}, "half_life_days"),
    ({"half_life_days": "1e309"}, "half_life_days"),
    ({"recency": "nan"}, "recency"),
    ({"recency": "1e308"}, "less than or equal to 10"),
    ({"until": "9999-12-31"}, "less than or equal to 9999-12-30"),
    ({"since": "9999-12-31"}, "less than or equal to 9999-12-30"),
    ({"since": "10000-01-01"}, "since"),
    ({"since": "0000-01-01"}, "since"),
    ({"since": "2024-05-02", "until": "2024-05-01"}, "since must be on or before until"),
    ({"limit": "1000000000000000000000"}, "less than or equal to 100"),
    ({"offset": "99999999999999999999"}, "offsets stop at 1,000"),
    ({"limit": "0"}, "greater than or equal to 1"),
    ({"offset": "1.5"}, "valid integer"),
])
async def test_every_out_of_range_parameter_is_a_422(
    api: httpx.AsyncClient, params: dict[str, Any], reason: str,
) -> None:
    for path in ("/search", "/facets"):
        if path == "/facets" and not set(params) <= {"since", "until"}:
            continue
        response = await api.get(path, params={"q": "Rahmon", **params})
        assert response.status_code == 422, (path, response.text)
        assert reason in response.text


async def test_the_widest_valid_values_answer(api: httpx.AsyncClient) -> None:
    for params in ({"since": "0001-01-01", "until": "9999-12-30"},
                   {"half_life_days": "0.01", "recency": "10"},
                   {"half_life_days": "3650", "sort": "oldest", "limit": "100",
                    "offset": "1000"}):
        response = await api.get("/search", params={"q": "Rahmon", **params})
        assert response.status_code == 200, (params, response.text)
    # The ancient article and the shortest half-life: a boost of nothing, not an underflow.
    body = (await api.get("/search", params={"q": "Rahmon", "half_life_days": "0.01"})).json()
    assert {h["id"] for h in body["hits"]} >= {"old"}
    facets = await api.get("/facets", params={"since": "0001-01-01", "until": "9999-12-30"})
    assert facets.status_code == 200


@pytest.mark.parametrize(("path", "status"), [
    ("/", 200), ("/static/search.js", 200), ("/static/search.css", 200),
    ("/search?q=Rahmon", 200), ("/facets", 200), ("/health", 200), ("/openapi.json", 200),
    ("/articles/nothing", 404), ("/search?limit=0", 422), ("/nowhere", 404), ("/boom", 500),
    ("/docs", 200),
])
async def test_every_response_carries_the_security_headers(
    api: httpx.AsyncClient, path: str, status: int,
) -> None:
    response = await api.get(path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    if path != "/docs":
        assert "unsafe-inline" not in csp and "script-src 'self';" in csp


async def test_the_search_page_has_no_inline_script_or_style(api: httpx.AsyncClient) -> None:
    page = (await api.get("/")).text
    assert '<script src="static/search.js"></script>' in page
    assert '<link rel="stylesheet" href="static/search.css">' in page
    assert "<style" not in page and " on" + "click=" not in page and " style=" not in page
    bodies = [part.split(">", 1)[1].split("</script>", 1)[0]
              for part in page.split("<script")[1:]]
    assert bodies and all(body == "" for body in bodies)
    script = await api.get("/static/search.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "fetch(" in script.text
    style = await api.get("/static/search.css")
    assert style.headers["content-type"].startswith("text/css") and "mark" in style.text


async def test_credentials_in_a_url_are_never_shown(api: httpx.AsyncClient) -> None:
    body = (await api.get("/search", params={"q": "Tehran"})).json()
    assert body["hits"][0]["url"] == "https://news.example.com/a"
    article = (await api.get(f"/articles/{body['hits'][0]['id']}")).text
    assert "s3cret" not in article and "u:p@" not in article and "admin" not in article


def test_the_api_listens_on_loopback_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSFLOW_API_HOST", raising=False)
    assert Settings().api_host == "127.0.0.1"
    monkeypatch.setenv("NEWSFLOW_API_HOST", "0.0.0.0")
    assert Settings().api_host == "0.0.0.0"
