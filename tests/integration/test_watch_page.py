"""The search page's watches in a real headless browser (Debian's chromium driven by Playwright):
"watch this search" with the token, the list of watches with their new matches and feed links,
and no such action when the server takes no changes.

Needs `apt-get install chromium` and `pip install playwright` (no browser download); skipped
with the reason otherwise."""

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from services.api.main import create_app
from services.watcher.match import Matcher
from shared import store, watches
from shared.messages import ArticleEnriched, ArticleIndexed
from shared.settings import Settings
from tests.servers import PostgresServer, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
async_api = pytest.importorskip("playwright.async_api",
                                reason="the playwright package is not installed")
uvicorn = pytest.importorskip("uvicorn")
TOKEN = "page-token"  # noqa: S105 -- a test's API token


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "the API did not start"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
async def database(postgres_server: PostgresServer) -> str:
    pool = await watches.connect(postgres_server.url)
    await pool.execute("TRUNCATE watches CASCADE")
    await pool.execute("TRUNCATE articles")
    await store.upsert_articles(pool, [ArticleEnriched(
        id="tj1", url="https://news.example.com/tj1", title="Rahmon receives envoys",
        text="Rahmon met the envoys in Dushanbe.", language="en", countries=["TJ"],
        published=datetime(2024, 5, 2, tzinfo=UTC))])
    await pool.close()
    return postgres_server.url


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        opened = await (await browser.new_context()).new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda exc: errors.append(str(exc)))
        yield opened
        await browser.close()
        assert not errors, errors


async def test_watch_this_search_then_see_its_matches(page: Any, database: str) -> None:
    answers = iter(["tajik news", TOKEN, ""])  # name, token, webhook (none)
    asked: list[str] = []

    async def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        await dialog.accept(next(answers))

    page.on("dialog", lambda dialog: asyncio.ensure_future(answer(dialog)))
    settings = Settings(database_url=database, api_token=TOKEN, public_url="http://feeds.test")
    with serving(settings) as site:
        await page.goto(site + "?q=Rahmon&country=TJ")
        await page.wait_for_selector("#watch-this:not([hidden])")
        await page.click("#watch-this")
        await page.wait_for_selector("#watch-status code")
        assert "Watching \"tajik news\"" in await page.text_content("#watch-status")
        assert len(asked) == 3 and "token" in asked[1]
        item = await page.text_content("#watch-list li.watch")
        assert "tajik news" in item and '"Rahmon", country: TJ' in item
        assert "0 today, 0 this week" in item
        feed = await page.get_attribute("#watch-list li.watch a", "href")
        assert feed.startswith("http://feeds.test/watches/") and "key=" in feed

        pool = await watches.connect(database)
        try:
            [saved] = await watches.list_watches(pool)
            assert saved.filters.model_dump(exclude_none=True) == {"q": "Rahmon",
                                                                  "country": "TJ"}
            await Matcher(pool).matches(ArticleIndexed(id="tj1"))
        finally:
            await pool.close()
        await page.reload()
        await page.wait_for_selector("#watch-list li.watch")
        assert "1 today, 1 this week" in await page.text_content("#watch-list li.watch")
        await page.click("#watch-list li.watch button")
        await page.wait_for_selector("#watch-list .recent li a")
        link = page.locator("#watch-list .recent li a")
        assert await link.text_content() == "Rahmon receives envoys"
        assert await link.get_attribute("href") == "https://news.example.com/tj1"


async def test_no_watch_action_without_a_server_token(page: Any, database: str) -> None:
    with serving(Settings(database_url=database)) as site:
        async with page.expect_response(lambda r: r.url.endswith("/watches")) as listed:
            await page.goto(site + "?q=Rahmon")
        assert (await (await listed.value).json())["writable"] is False
        await page.wait_for_load_state("networkidle")
        assert await page.is_hidden("#watch-this")
