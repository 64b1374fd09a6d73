"""Every Redis key newsflow uses besides its streams (those are in streams.py), in one place.

All start with `newsflow:`, so `redis-cli --scan --pattern 'newsflow:*'` lists them; a prefix is
completed by what the comment says.
"""

PREFIX = "newsflow:"

# Politeness, per host name (lower case), shared by every fetcher replica and the scheduler.
HOST_SLOTS_PREFIX = PREFIX + "host:slots:"
"""+ host: sorted set of the requests in flight to that host (member: a token; score: when its
lease ends, in ms, so a slot held by a replica that died frees itself)."""
HOST_NEXT_PREFIX = PREFIX + "host:next:"
"""+ host: the earliest time (ms, Redis clock) the next request to that host may start."""

ROBOTS_PREFIX = PREFIX + "robots:"
"""+ origin ("https://example.com:443"): the site's robots.txt as JSON, expiring."""

FETCHED_PREFIX = PREFIX + "fetched:"
"""+ article id: hash of the last fetch of that URL (final_url, status, etag, last_modified,
fetched_at); its presence means "already fetched". Expires after fetch_history_days."""

RETRIES_PREFIX = PREFIX + "retries:"
"""+ stream: hash of the entries that failed and wait to be retried: entry id → "<failed
attempts>:<Unix time the next attempt may start>" (shared/broker.py)."""

JANITOR_LOCK = PREFIX + "janitor:lock"
"""Held (with an expiry) by the replica doing this round of housekeeping (shared/janitor.py)."""

DUPLICATES_PREFIX = PREFIX + "duplicates:"
"""+ "v<signature version>:…": the near-duplicate index (services/enricher/duplicates.py)."""

PARKED = PREFIX + "fetch:parked"
"""Sorted set: submitted articles (their message, as JSON) waiting for their host's Retry-After
→ when they go back to articles:submitted (Unix seconds, Redis clock; services/fetcher/crawl.py)."""
ROBOTS_LOCK_PREFIX = PREFIX + "robots:lock:"
"""+ origin: held (with an expiry) by the replica fetching that origin's robots.txt, so the
others wait for its answer in the cache instead of asking the site too."""

PARSE_KILLS_PREFIX = PREFIX + "parse:kills:"
"""+ article id: how many parse workers that article's page killed (out of memory, crashed);
expires after a day. The second makes the page permanent (services/parser/main.py)."""

FEEDS = PREFIX + "feeds"
"""Hash: feed URL → its registration as JSON (every_s, added_at, since)."""
FEEDS_DUE = PREFIX + "feeds:due"
"""Sorted set: feed URL → when it is next due (Unix seconds)."""
FEED_STATE_PREFIX = PREFIX + "feed:state:"
"""+ feed URL: hash of its last poll (etag, last_modified, polled_at, status, entries, error)."""
FEED_SEEN_PREFIX = PREFIX + "feed:seen:"
"""+ feed URL: sorted set of the entry URLs seen in it (score: when last seen, Unix seconds)."""
FEED_FAILING_PREFIX = PREFIX + "feed:failing:"
"""+ feed URL: hash of the files of it that failed (the feed itself, sitemaps of its index) →
JSON {attempts, retry_at, error}: each is retried with backoff (shared/sources/registry.py)."""
REPARSE_CURSOR_PREFIX = PREFIX + "reparse:cursor:"
"""+ selection ("all", "since:2026-01-01", "ids:<hash>"): id of the last kept page `newsflow
reparse` published for it, so that a run cut short resumes there; deleted when a run ends."""


def host_slots(host: str) -> str:
    return HOST_SLOTS_PREFIX + host


def host_next(host: str) -> str:
    return HOST_NEXT_PREFIX + host


def robots(origin: str) -> str:
    return ROBOTS_PREFIX + origin


def robots_lock(origin: str) -> str:
    return ROBOTS_LOCK_PREFIX + origin


def fetched(article_id: str) -> str:
    return FETCHED_PREFIX + article_id


def parse_kills(article_id: str) -> str:
    return PARSE_KILLS_PREFIX + article_id


def feed_state(url: str) -> str:
    return FEED_STATE_PREFIX + url


def feed_seen(url: str) -> str:
    return FEED_SEEN_PREFIX + url


def feed_failing(url: str) -> str:
    return FEED_FAILING_PREFIX + url


REPLICA_PREFIX = PREFIX + "replica:"
"""+ consumer name: a running replica's heartbeat as JSON (stage, metrics address, pid),
expiring a few seconds after the replica stops renewing it (shared/replicas.py)."""


def replica(consumer: str) -> str:
    return REPLICA_PREFIX + consumer


def reparse_cursor(selection: str) -> str:
    return REPARSE_CURSOR_PREFIX + selection
