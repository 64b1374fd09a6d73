"""The search API: read-only HTTP over the search store (/search, /facets, /articles/{id},
/health) and the search page at /."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from services.api.security import SecureFastAPI
from services.api.watches import watch_routes
from shared import store, watches
from shared.reach import when_reachable, where
from shared.settings import Settings

PAGE = Path(__file__).with_name("search.html")
STATIC = Path(__file__).with_name("static")


def serve_docs_offline(app: FastAPI) -> None:
    """/docs: Swagger UI from the swagger-ui-bundle-v2 package, its assets under /docs/assets."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await when_reachable(
            lambda: store.connect(settings.database_url, max_size=10, read_only=True),
            f"PostgreSQL at {where(settings.database_url)}", settings.startup_wait_s)
        # Watches are written by token holders only, through a pool of their own (the search
        # pool refuses writes); it also puts the watch tables in place.
        app.state.watch_pool = await watches.connect(settings.database_url, max_size=3)
        try:
            yield
        finally:
            await app.state.pool.close()
            await app.state.watch_pool.close()

    # Every response carries the security headers (services/api/security.py).
    app = SecureFastAPI(
        title="newsflow search",
        description=(
            "Search the articles newsflow has indexed: words, \"phrases\", -exclusion and OR, "
            "each article matched in its own language; filters by language, dates, source, "
            "person, organisation, place, country and duplicates; facets; duplicates folded "
            "under their first article. Read only. Invalid input is answered with 422 and "
            "the reason."
        ),
        version="0.2.0",
        lifespan=lifespan,
        # /docs is served below from a PyPI package's copy of Swagger UI, not from a CDN, so
        # it works without internet; ReDoc would need one.
        docs_url=None,
        redoc_url=None,
    )
    serve_docs_offline(app)
    page = PAGE.read_text(encoding="utf-8")
    app.include_router(watch_routes(settings))

    def pool(request: Request) -> asyncpg.Pool:
        return request.app.state.pool  # type: ignore[no-any-return]  # set by the lifespan

    Pool = Annotated[asyncpg.Pool, Depends(pool)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def search_page() -> HTMLResponse:
        """The search page: a query box, facets to click, results with snippets."""
        return HTMLResponse(page)

    @app.get("/static/search.js", include_in_schema=False)
    async def search_script() -> FileResponse:
        """The search page's script (a file: the Content-Security-Policy allows no inline one)."""
        return FileResponse(STATIC / "search.js", media_type="text/javascript")

    @app.get("/static/watches.js", include_in_schema=False)
    async def watches_script() -> FileResponse:
        """The search page's watches: "watch this search" and the list of watches."""
        return FileResponse(STATIC / "watches.js", media_type="text/javascript")

    @app.get("/static/search.css", include_in_schema=False)
    async def search_style() -> FileResponse:
        """The search page's style."""
        return FileResponse(STATIC / "search.css", media_type="text/css")

    @app.get("/health")
    async def health(db: Pool) -> dict[str, Any]:
        """Ready when the search store answers; the article count is exact up to 1,000 and the
        planner's estimate past it (`articles_is_estimate`), so it costs the same at any size."""
        async with db.acquire() as conn:
            articles, estimated = await store.count_articles(conn)
        return {"status": "ok", "articles": articles, "articles_is_estimate": estimated}

    @app.get("/search", response_model=store.SearchResults)
    async def search(db: Pool, query: Annotated[store.SearchQuery, Query()]) -> Any:
        """Ranked full-text search with filters, highlighted snippets, duplicates folded under
        their first article, total counts, and facets with `facets=true`. Totals are exact up
        to NEWSFLOW_SEARCH_BOUND matching articles and estimates past it
        (`total_is_estimate`); relevance then ranks, and facets count, the newest that many.
        Page with `offset` (first pages) or `after` = the previous page's `next` (any depth)."""
        return await store.search(db, query, bound=settings.search_bound)

    @app.get("/facets", response_model=store.Facets)
    async def facets(db: Pool, query: Annotated[store.FacetQuery, Query()]) -> Any:
        """How the articles matching a search spread over languages, sources, countries, people,
        organisations, places and days (counts of articles, duplicates included)."""
        return await store.facets(db, query, top=query.top, bound=settings.search_bound)

    @app.get("/articles/{article_id}")
    async def get_article(
        db: Pool, article_id: Annotated[str, PathParam(max_length=200)]
    ) -> dict[str, Any]:
        """The whole stored article: text, metadata, entities, countries, keywords."""
        article = await store.get_article(db, article_id)
        if article is None:
            raise HTTPException(status_code=404, detail=f"no article {article_id!r}")
        return article

    return app
