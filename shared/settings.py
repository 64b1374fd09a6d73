"""Every setting of every service, read once from the environment (documented in .env.example)."""

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """newsflow's configuration. Variables are NEWSFLOW_<NAME>; the two addresses also read
    the conventional REDIS_URL and DATABASE_URL."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSFLOW_", extra="ignore", frozen=True, populate_by_name=True
    )

    redis_url: str = Field(
        "redis://localhost:6379/0", validation_alias=AliasChoices("REDIS_URL", "NEWSFLOW_REDIS_URL")
    )
    database_url: str = Field(
        "postgresql://newsflow:newsflow@localhost:5432/newsflow",
        validation_alias=AliasChoices("DATABASE_URL", "NEWSFLOW_DATABASE_URL"),
    )

    # Delivery (see README, "Delivery").
    max_deliveries: int = 5
    """Attempts at one entry before it goes to the dead letters."""
    claim_idle_ms: int = 60_000
    """How long an entry stays pending before another replica reclaims it; the first retry
    delay (doubling after each failure). It must exceed the slowest handler."""
    consumer_gone_ms: int = 600_000
    """A consumer silent this long, holding nothing, belonged to a replica that is gone."""
    janitor_interval_s: int = 60
    """How often one replica trims the streams and forgets gone consumers."""
    indexed_keep: int = 100_000
    """Entries of articles:indexed kept for publishers that wait (nobody acknowledges it)."""
    poll_ms: int = 1_000
    """How long a read blocks waiting for new entries."""
    graceful_timeout_s: float = 20.0
    """On SIGTERM, how long in-flight work may take to finish."""

    # Fetcher.
    allow_private_networks: bool = False
    """Fetch from private, loopback and link-local addresses (tests and intranets only)."""
    user_agent: str = "newsflow/0.1 (+https://github.com/newsflow/newsflow)"
    fetch_timeout_s: float = 20.0
    max_redirects: int = 5
    max_page_bytes: int = 5 * 1024 * 1024
    fetch_concurrency: int = 16

    # Parser.
    parse_workers: int = 1
    """Processes that run extraction, so the event loop keeps consuming and acking."""
    parse_timeout_s: float = 30.0

    # Search API.
    api_host: str = "0.0.0.0"  # noqa: S104 -- the API serves other containers.
    api_port: int = 8000

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
