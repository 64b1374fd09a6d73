"""The search store for one CLI command: a small pool for the work, and one clear line (no
traceback, no password) when PostgreSQL cannot be reached."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

T = TypeVar("T")

Connect = Callable[..., Awaitable[Any]]
"""shared.store.connect, or shared.watches.connect (the watch tables in place too)."""


def with_pool(work: Callable[[Any], Awaitable[T]], connect: Connect | None = None) -> T:
    """Run `work(pool)` on a pool from `connect` (default: shared.store.connect)."""
    # Imported here: asyncpg and the store are heavy, and most commands never need them.
    import asyncpg

    from shared import store
    from shared.settings import Settings

    settings = Settings()

    async def go() -> T:
        pool = await (connect or store.connect)(settings.database_url, max_size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    except (OSError, asyncpg.PostgresError) as exc:
        # Imported here: shared.reach imports redis-py, which a search does not need.
        from shared.reach import where

        typer.echo(f"error: cannot reach the search store at {where(settings.database_url)} "
                   f"(DATABASE_URL): {exc}", err=True)
        raise typer.Exit(1) from None
