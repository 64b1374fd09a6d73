"""The search page in a real headless browser (Debian's chromium driven by Playwright): search,
click facets, follow links, fold duplicates, page, show errors, and render hostile text inertly.

Needs `apt-get install chromium` and `pip install playwright` (no browser download); skipped
with the reason otherwise."""

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.api.main import create_app
from shared import store
from shared.settings import Settings
from tests.fixtures.search.corpus import MARKER, build_corpus, expected, stories
from tests.servers import PostgresServer, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
async_api = pytest.importorskip("playwright.async_api",
                                reason="the playwright package is not installed")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
async def site(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The API with the search corpus, served by uvicorn on a free port."""
    pool = await store.connect(postgres_server.url)
    await pool.execute("TRUNCATE articles")
    await store.upsert_articles(pool, build_corpus())
    await pool.close()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(Settings(database_url=postgres_server.url)), host="127.0.0.1", port=port,
        log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "the API did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
async def browser(site: str) -> AsyncIterator[Any]:
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context()
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    await context.close()
    assert not errors, errors


async def ready(page: Any) -> None:
    await page.wait_for_selector("body[data-state=ready], body[data-state=error]")


async def shown_ids(page: Any) -> list[str]:
    return [await h.get_attribute("data-id") for h in await page.query_selector_all(".hit")]


async def test_search_click_facets_and_follow_links(page: Any, site: str) -> None:
    corpus = build_corpus()
    await page.goto(site)
    await ready(page)
    # No query: what is indexed, the latest first, and the facets to click.
    summary = await page.text_content("#summary")
    assert summary == (f"{len(corpus)} articles indexed ({len(stories(corpus, corpus))} "
                       "stories). The latest:")
    assert await page.get_attribute("body", "data-view") == "browse"
    newest = max(a.published for a in corpus if a.published)
    assert (await page.text_content(".hit .meta >> nth=0")).startswith(newest.date().isoformat())
    assert await page.query_selector_all("aside button[data-facet=country]")

    await page.fill("#q", MARKER)
    await page.press("#q", "Enter")
    await page.wait_for_url(f"**q={MARKER}**")
    await ready(page)
    found = stories(corpus, expected(corpus, marker=True))
    assert (await page.text_content("#summary")).startswith(f"{len(found)} stories")
    assert len(await page.query_selector_all(".hit .snippet mark")) >= 10

    await page.click("aside button[data-facet=language] >> text='de'")
    await page.wait_for_url("**language=de**")
    await ready(page)
    german = stories(corpus, expected(corpus, marker=True, language="de"))
    assert sorted(await shown_ids(page)) == sorted(german)[:10] or len(german) > 10
    assert await page.is_visible("#chips >> text='language: de ✕'")
    metas = [await m.text_content() for m in await page.query_selector_all(".hit .meta")]
    assert metas and all(" · de" in m for m in metas)

    person = await page.text_content("aside button[data-facet=person] >> nth=0")
    await page.click("aside button[data-facet=person] >> nth=0")
    await page.wait_for_url("**person=**")
    await ready(page)
    both = stories(corpus, expected(corpus, marker=True, language="de", person=person))
    assert sorted(await shown_ids(page)) == sorted(both)
    first = corpus[[a.id for a in corpus].index((await shown_ids(page))[0])]
    assert await page.get_attribute(".hit h2 a >> nth=0", "href") == first.url

    await page.click("#chips >> text='language: de ✕'")
    await page.wait_for_function("!location.search.includes('language=')")
    await ready(page)
    assert "language" not in await page.text_content("#chips")


async def test_duplicates_fold_and_pages_turn(page: Any, site: str) -> None:
    await page.goto(site + "?sort=date")
    await ready(page)
    first_page = await shown_ids(page)
    await page.click("#next")
    await page.wait_for_url("**offset=10**")
    await ready(page)
    second_page = await shown_ids(page)
    assert len(second_page) == 10 and not set(first_page) & set(second_page)
    await page.goto(site + "?has_duplicates=true&sort=date")
    await ready(page)
    similar = await page.query_selector_all(".hit details.similar summary")
    assert similar and await similar[0].text_content() == "1 similar"


async def test_hostile_text_is_shown_not_run(page: Any, site: str) -> None:
    await page.goto(site + "?q=quokka")
    await ready(page)
    titles = [await a.text_content() for a in await page.query_selector_all(".hit h2 a")]
    assert any(t.startswith('<img src=x onerror="window.pwned=1">') for t in titles)
    assert await page.evaluate("window.pwned") is None
    assert await page.query_selector(".hit img, .hit script") is None
    assert await page.query_selector(".hit .snippet mark") is not None


async def test_invalid_filters_show_the_reason(page: Any, site: str) -> None:
    await page.goto(site + "?country=IRN")
    await ready(page)
    assert "country" in await page.text_content("#error")
    assert await shown_ids(page) == []


async def test_an_empty_index_says_so_and_counts_are_singular(page: Any, site: str) -> None:
    """The page over an empty index, and over one article: the API's answers replaced."""
    empty = {"total": 0, "total_articles": 0, "offset": 0, "limit": 10, "hits": [],
             "facets": None}
    await page.route("**/search?*", lambda route: route.fulfill(json=empty))
    await page.goto(site)
    await ready(page)
    assert await page.text_content("#summary") == (
        "Nothing indexed yet. Publish articles with: newsflow publish URL")
    await page.unroute("**/search?*")

    await page.goto(site + "?q=" + MARKER)
    await ready(page)
    one = await page.evaluate("""async () => {
        const body = await (await fetch("search?limit=1&q=" + new URLSearchParams(location.search)
                                        .get("q"))).json();
        return {...body, total: 1, total_articles: 1, hits: body.hits.slice(0, 1)};
    }""")
    await page.route("**/search?*", lambda route: route.fulfill(json=one))
    await page.goto(site + "?q=" + MARKER)
    await ready(page)
    assert await page.get_attribute("body", "data-view") == "search"
    assert await page.text_content("#summary") == "1 story (1 article) — 1–1"


async def test_a_cursor_page_is_numbered_and_pages_on(
    page: Any, site: str, postgres_server: PostgresServer
) -> None:
    """Deep pages go by cursor (`after`, with `from` for the numbering, never sent to the
    API); Previous goes back the way we came."""
    await page.goto(site + "?sort=date")
    await ready(page)
    first_page = await shown_ids(page)
    pool = await store.connect(postgres_server.url)
    try:
        first = await store.search(pool, store.SearchQuery(sort="date", limit=10))
    finally:
        await pool.close()
    assert first.next and [h.id for h in first.hits] == first_page
    await page.goto(site + f"?sort=date&after={first.next}&from=10")
    await ready(page)
    assert "11–20" in (await page.text_content("#summary") or "")
    second_page = await shown_ids(page)
    assert len(second_page) == 10 and not set(first_page) & set(second_page)
    await page.click("#next")
    await page.wait_for_url("**from=20**")
    await ready(page)
    assert "21–30" in (await page.text_content("#summary") or "")
    await page.click("#prev")
    await page.wait_for_url("**from=10**")
    await ready(page)
    assert await shown_ids(page) == second_page
