"""Every setting of every service, read once from the environment (documented in .env.example)."""

import ipaddress
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
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
    """How long the entries of a replica that died or hung wait before another replica reclaims
    them (a live replica renews the lease of what it holds every third of this, so work may
    take longer); also the first retry delay (doubling after each failure)."""
    consumer_gone_ms: int = 600_000
    """A consumer silent this long, holding nothing, belonged to a replica that is gone."""
    janitor_interval_s: int = 60
    """How often one replica trims the streams and forgets gone consumers."""
    indexed_keep: int = 100_000
    """Entries of articles:indexed kept for publishers that wait (nobody acknowledges it)."""
    dead_retention_days: float = 30
    """Dead letters older than this are dropped by the janitor."""
    dead_max: int = 100_000
    """At most this many dead letters are kept (the oldest go first)."""
    dead_original_max_bytes: int = 2 * 1024 * 1024
    """A dead letter keeps its original entry compressed, cut to this many bytes (a cut one
    says so and cannot be retried)."""
    poll_ms: int = 1_000
    """How long a read blocks waiting for new entries."""
    read_ahead: int = 8
    """Entries a replica reads at once (at least as many as it works on at once): one read and
    one FastStream call for many entries. More a read holds more back from idle replicas."""
    graceful_timeout_s: float = 20.0
    """On SIGTERM, how long in-flight work may take to finish."""
    startup_wait_s: float = 60.0
    """At start, how long a service waits for Redis and PostgreSQL to answer before it exits."""

    # Fetcher.
    allow_private_networks: bool = False
    """Fetch from private, loopback and link-local addresses (tests and intranets only)."""
    allowed_networks: str = ""
    """Networks opened despite the guard, comma-separated ("10.20.0.0/16,192.168.1.7")."""
    user_agent: str = "newsflow/0.1 (+https://github.com/newsflow/newsflow)"
    fetch_timeout_s: float = 20.0
    max_redirects: int = 5
    max_page_bytes: int = 5 * 1024 * 1024
    fetch_concurrency: int = 16
    host_concurrency: int = 2
    """Requests to one host at once, across every fetcher replica (and the scheduler)."""
    host_delay_s: float = 1.0
    """Least time between two requests to one host; a longer robots.txt Crawl-delay wins."""
    max_crawl_delay_s: float = 60.0
    """The longest robots.txt Crawl-delay honoured (a longer one is cut to this)."""
    host_wait_max_s: float = 20.0
    """How long a fetch waits for its host; then the article is put back at the end of the queue
    so the replica serves other hosts."""
    obey_robots: bool = True
    """Honour robots.txt (Disallow, Crawl-delay); off only for sites you run yourself."""
    robots_cache_s: int = 86_400
    """How long a host's robots.txt is kept in Redis before it is fetched again."""
    fetch_attempts: int = 3
    """Attempts within one delivery for timeouts, connection errors, 429 and 5xx; then the
    delivery is retried later (NEWSFLOW_CLAIM_IDLE_MS) up to NEWSFLOW_MAX_DELIVERIES."""
    retry_backoff_s: float = 0.5
    """Base of the exponential backoff between attempts (with full jitter)."""
    retry_after_max_s: float = 10.0
    """The longest Retry-After waited within a delivery; a longer one parks the URL until then
    (every replica leaves the host alone meanwhile)."""
    retry_after_park_max_s: float = 86_400.0
    """The longest Retry-After a URL is parked for; a longer one dead-letters the article
    ("retry after <time>"): news that late is stale, and `newsflow dead retry` can send it
    again."""
    fetch_history_days: int = 90
    """How long a fetched URL is remembered (not fetched again, and its ETag/Last-Modified)."""
    max_source_bytes: int = 50 * 1024 * 1024
    """Cap on a feed or sitemap, decompressed (the sitemap protocol allows 50 MB)."""
    max_sitemaps: int = 100
    """Sitemap files read when expanding one sitemap index."""
    max_entries_per_source: int = Field(default=50_000, ge=1)
    """URLs kept from one feed or sitemap file, and from one `publish` command or poll (the
    sitemap protocol's 50,000 a file)."""
    scheduler_tick_s: float = 5.0
    """How often the scheduler looks for feeds that are due."""

    # Parser.
    parse_workers: int = 1
    """Processes that run extraction, so the event loop keeps consuming and acking."""
    parse_timeout_s: float = 30.0
    parse_memory_mb: int = 1024
    """Address space each parse worker may use (RLIMIT_AS; 0: no cap). A page that needs more
    is retried once, then dead-lettered as permanent."""
    parse_max_elements: int = 200_000
    """Pages with more elements are refused before parsing (their tree would take gigabytes)."""
    keep_pages_days: int = Field(30, ge=0)
    """Days the parser keeps each fetched page (compressed, in PostgreSQL) so that `newsflow
    reparse` can run it through the pipeline again without fetching; 0 keeps none. About 60 MB
    per 1,000 articles (measured on the dev set's pages, 321 KB of HTML each)."""

    # Every stage serves /health and /metrics (Prometheus) on this port; 0 picks a free one.
    metrics_port: int = 9000
    metrics_host: str = "127.0.0.1"
    """Where /health and /metrics listen (compose sets 0.0.0.0 so others can scrape them)."""

    # Enricher: an article whose body is at least this similar (estimated Jaccard of word
    # shingles) to one seen in the last duplicate_window_s seconds is linked to it.
    duplicate_threshold: float = 0.45
    duplicate_window_s: int = 7 * 24 * 3600

    # Indexer: enriched articles read (and written to the store) at once, at most.
    index_batch: int = 100

    # Search API.
    api_host: str = "127.0.0.1"
    """Where the API listens: loopback unless configured (compose sets 0.0.0.0 for its port)."""
    api_port: int = 8000
    search_bound: int = Field(1000, ge=1, le=100_000)
    """Matching articles a search counts exactly, ranks by relevance and facets (the newest);
    past it totals are estimates ("about 510,000"). Bounds each search's work at any archive
    size; see docs/performance.md."""

    # Watches (see README, "Follow a subject").
    api_token: str = ""
    """Bearer token the API asks for on the endpoints that change something (/watches); empty:
    those endpoints are off, the read-only API stays open."""
    public_url: str = "http://localhost:8000"
    """Where the API is reached from outside: the base of the watches' feed URLs."""
    webhook_timeout_s: float = 10.0
    """The longest one webhook POST may take (connection and answer)."""
    webhook_attempts: int = 3
    """POSTs within one delivery for timeouts, connection errors, 429 and 5xx (backoff from
    NEWSFLOW_RETRY_BACKOFF_S, Retry-After honoured up to NEWSFLOW_RETRY_AFTER_MAX_S); then the
    delivery is retried later, up to NEWSFLOW_MAX_DELIVERIES, and then dead-lettered."""
    webhook_concurrency: int = 8
    """Webhook deliveries one watcher replica makes at once."""

    log_level: str = "INFO"
    log_format: Literal["text", "json", "plain"] = "text"
    """text: time, service, level, message; json: JSON lines; plain: level and message only
    (what `newsflow up` gives its children: it adds the time and the replica itself)."""

    # `newsflow up`.
    data_dir: str = ""
    """Where `newsflow up` keeps the data of the servers it starts, and where the CLI finds the
    stack it started; empty: the user's data folder (~/.local/share/newsflow)."""

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        # Refuse a bad list at start-up, not at the first fetch.
        for part in filter(None, (p.strip() for p in value.split(","))):
            ipaddress.ip_network(part, strict=False)
        return value
