"""The parser's page archive: each fetched page kept for `newsflow reparse` (shared/pages.py)."""

import logging
import time

import asyncpg

from shared import pages, store
from shared.messages import ArticleFetched
from shared.reach import when_reachable, where
from shared.settings import Settings

logger = logging.getLogger("newsflow.parser")

# Expired pages are deleted at most this often (by whichever replica comes first).
_EXPIRY_EVERY_S = 3600.0


class PageArchive:
    """Where the parser keeps each fetched page for `newsflow reparse` (none when days is 0)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.expired_at = 0.0

    async def open(self) -> None:
        if self.settings.keep_pages_days:
            self.pool = await when_reachable(
                lambda: store.connect(self.settings.database_url),
                f"PostgreSQL at {where(self.settings.database_url)}",
                self.settings.startup_wait_s)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def keep(self, page: ArticleFetched) -> None:
        if self.pool is None:
            return
        await pages.keep_page(self.pool, page)
        if time.monotonic() - self.expired_at > _EXPIRY_EVERY_S:
            self.expired_at = time.monotonic()
            dropped = await pages.drop_expired(self.pool, self.settings.keep_pages_days)
            logger.info("dropped %d pages kept over %d days", dropped,
                        self.settings.keep_pages_days)
