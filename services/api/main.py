"""The search API: read-only HTTP over the search store (GET /search, /articles/{id}, /health)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request

from shared import store
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await store.connect(settings.database_url, max_size=10)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="newsflow search",
        description="Search the articles newsflow has indexed.",
        version="0.1.0",
        lifespan=lifespan,
    )

    def pool(request: Request) -> asyncpg.Pool:
        return request.app.state.pool  # type: ignore[no-any-return]  # set by the lifespan

    Pool = Annotated[asyncpg.Pool, Depends(pool)]

    @app.get("/health")
    async def health(db: Pool) -> dict[str, Any]:
        """Ready when the search store answers."""
        async with db.acquire() as conn:
            articles = await conn.fetchval("SELECT count(*) FROM articles")
        return {"status": "ok", "articles": articles}

    @app.get("/search", response_model=store.SearchResults)
    async def search(db: Pool, query: Annotated[store.SearchQuery, Depends()]) -> Any:
        """Full-text search (web-search syntax: words, "phrases", -exclusion, OR) with filters."""
        return await store.search(db, query)

    @app.get("/articles/{article_id}")
    async def get_article(db: Pool, article_id: str) -> dict[str, Any]:
        """The whole stored article: text, metadata, entities, countries, keywords."""
        article = await store.get_article(db, article_id)
        if article is None:
            raise HTTPException(status_code=404, detail=f"no article {article_id!r}")
        return article

    return app
