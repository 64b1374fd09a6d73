"""The events that flow between the stages: frozen pydantic models, named as facts.

Rules (see README, "Message contracts"): fields are added, never renamed or reused; every event
carries `schema_version`, and a reader refuses (to the dead letters) a version it does not know.
Every event carries the article id, the submitted URL and a `trace` of when each stage finished.
"""

import base64
import hashlib
import logging
import zlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import idna
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    computed_field,
    field_validator,
    model_validator,
)

logger = logging.getLogger("newsflow.messages")

SCHEMA_VERSION = 1

# Ids are 20 hex digits when newsflow derives them; a longer one was made by hand, and past a
# few KB PostgreSQL's index on it would refuse the row (for ever).
MAX_ID_CHARS = 256

# Hard cap on a page carried in a message, whatever the fetcher's own (lower) limit says.
MAX_HTML_BYTES = 10 * 1024 * 1024

# Query parameters that only track the click and never change the page.
_TRACKING_PARAMS = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid", "ocid")

_ZLIB_PREFIX = "zlib:"


# Adult silent reading of news prose, words per minute (a common planning figure).
READING_WPM = 230


def reading_minutes(words: int) -> int:
    """Minutes a reader needs for `words` words, at least 1 for any text."""
    return max(1, round(words / READING_WPM)) if words else 0


def now() -> datetime:
    """The current time, timezone-aware (every timestamp in newsflow is UTC)."""
    return datetime.now(UTC)


def canonical_url(url: str) -> str:
    """The URL with what does not identify the page removed: case of scheme and host, default
    port, fragment, tracking parameters."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:  # out of range: refused by ArticleSubmitted; here only a label's key
        port = None
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
         if not k.lower().startswith(_TRACKING_PARAMS)]
    )
    return urlunsplit((scheme, host, parts.path or "/", query, ""))


def without_credentials(url: str) -> str:
    """The URL without its user name and password (`https://admin:s3cret@host/` → `https://host/`):
    newsflow never stores or shows them."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _check_host(host: str) -> None:
    """Raise ValueError for a host name no resolver can look up (an invalid IDN such as
    `xn--zz--.test`): better refused here, at once, than retried at every fetch."""
    for label in host.rstrip(".").split("."):
        if label.isascii() and not label.lower().startswith("xn--"):
            continue  # plain ASCII (IP addresses too): left to the resolver, as browsers do
        try:
            if label.isascii():
                idna.decode(label)
            else:
                # UTS 46 mapping, as browsers do: "Bücher" passes as "xn--bcher-kva".
                idna.encode(label, uts46=True)
        except (idna.IDNAError, UnicodeError) as error:
            raise ValueError(f"invalid host name {host!r}: {error}") from None


def _strip_nul(value: Any, path: str, found: list[str]) -> Any:
    """`value` without NUL characters (PostgreSQL text and jsonb cannot hold them); the paths
    where some were removed are appended to `found`."""
    if isinstance(value, str):
        if "\x00" in value:
            found.append(path)
            return value.replace("\x00", "")
        return value
    if isinstance(value, dict):
        return {_strip_nul(k, path, found): _strip_nul(v, f"{path}.{k}" if path else str(k), found)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v, path, found) for v in value]
    return value


def article_id(url: str | None = None, html: str | None = None) -> str:
    """A stable id: from the canonical URL, or from the content for raw HTML without URL."""
    if url:
        key = "url:" + canonical_url(url)
    elif html is not None:
        key = "html:" + html
    else:
        raise ValueError("an article needs a url or html")
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _decompress_html(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_ZLIB_PREFIX):
        raw = base64.b64decode(value[len(_ZLIB_PREFIX):], validate=True)
        inflater = zlib.decompressobj()
        # max_length bounds what a hostile message can make us allocate (a zlib bomb).
        data = inflater.decompress(raw, MAX_HTML_BYTES + 1)
        if len(data) > MAX_HTML_BYTES or inflater.unconsumed_tail:
            raise ValueError(f"html is over the {MAX_HTML_BYTES} byte cap")
        return data.decode("utf-8")
    if isinstance(value, str) and len(value.encode()) > MAX_HTML_BYTES:
        raise ValueError(f"html is over the {MAX_HTML_BYTES} byte cap")
    return value


def _compress_html(value: str) -> str:
    return _ZLIB_PREFIX + base64.b64encode(zlib.compress(value.encode("utf-8"), 6)).decode()


# Held as plain text in Python; on the wire zlib+base64 ("zlib:..."). Plain text is accepted on
# input, so `redis-cli XADD` can send raw HTML as it is.
Html = Annotated[
    str,
    BeforeValidator(_decompress_html),
    PlainSerializer(_compress_html, return_type=str, when_used="json"),
]


class Event(BaseModel):
    """What every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = SCHEMA_VERSION
    id: str
    url: str | None = None
    trace: dict[str, datetime] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # A NUL costs nothing to drop and the article stays useful; kept, it would make the
        # store refuse the article at every attempt. (The page itself is not stored: left as is.)
        if isinstance(data, dict):
            found: list[str] = []
            data = {k: v if k == "html" else _strip_nul(v, str(k), found)
                    for k, v in data.items()}
            if found:
                logger.warning("removed NUL characters from %s of %s", ", ".join(found),
                               data.get("id") or data.get("url") or "an event")
        return data

    @field_validator("id")
    @classmethod
    def _id_size(cls, value: str) -> str:
        if len(value) > MAX_ID_CHARS:
            raise ValueError(f"id longer than {MAX_ID_CHARS} characters")
        return value

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        return without_credentials(url) if url else url

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {version} (this reader knows up to {SCHEMA_VERSION})"
            )
        return version

    def traced(self, stage: str) -> dict[str, datetime]:
        """The trace with `stage` stamped now, for the next event."""
        return {**self.trace, stage: now()}


def http_url(url: str) -> str:
    """`url` stripped, if it is an http(s) URL a fetch could ever reach; else ValueError."""
    url = url.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError(f"control character in URL: {url!r}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError as error:
        raise ValueError(f"not an http(s) URL: {url!r} ({error})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    _check_host(host)
    return url


class ArticleSubmitted(Event):
    """Someone asked for an article: a URL to fetch, or raw HTML (with or without its URL).

    Its id is always derived here, from the URL (or the HTML): an `id` in the input is ignored,
    so no submission can overwrite another article."""

    id: str = ""
    html: Html | None = None
    refresh: bool = False
    source: str = "api"

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        url, html = data.get("url"), data.get("html")
        if not url and html is None:
            raise ValueError("an article needs a url or html")
        if (url is not None and not isinstance(url, str)) or (
                html is not None and not isinstance(html, str)):
            # Wrong types: the field validators refuse them, each with its reason.
            return {**data, "id": ""}
        if url:
            url = http_url(url)
        html = _decompress_html(html) if html is not None else None
        return {**data, "id": article_id(url, html)}

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str | None) -> str | None:
        return without_credentials(http_url(url)) if url is not None else url


class ArticleFetched(Event):
    """The page is here: the HTML as served, and how it was served."""

    final_url: str | None = None
    status: int = 200
    content_type: str = "text/html"
    html: Html
    size_bytes: int = 0
    elapsed_ms: float = 0.0
    fetched_at: datetime = Field(default_factory=now)

    @field_validator("final_url")
    @classmethod
    def _final_url(cls, url: str | None) -> str | None:
        return without_credentials(url) if url else url


class Entity(BaseModel):
    """A person, organisation or place named in the article, with how often."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: Literal["person", "organization", "place"]
    count: int = 1
    country: str | None = None


class ArticleContent(Event):
    """The article as text and metadata (what the parser extracts)."""

    final_url: str | None = None
    canonical_url: str | None = None
    title: str = ""
    text: str = ""
    authors: list[str] = Field(default_factory=list)
    published: datetime | None = None
    modified: datetime | None = None
    language: str | None = None
    description: str | None = None
    site_name: str | None = None
    image: str | None = None
    tags: list[str] = Field(default_factory=list)
    words: int = 0  # as word processors count them: in Chinese and Japanese, each character
    paywalled: bool = False
    # Organisations credited with the story: wire agencies ("dpa", "Reuters"), or the publisher
    # or its desk when the page names no person. `authors` holds people only.
    credits: list[str] = Field(default_factory=list)

    @field_validator("final_url", "canonical_url", "image")
    @classmethod
    def _urls(cls, url: str | None) -> str | None:
        return without_credentials(url) if url else url

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern
    @property
    def reading_minutes(self) -> int:
        """Minutes a reader needs for the text (READING_WPM words a minute)."""
        return reading_minutes(self.words)


class ArticleParsed(ArticleContent):
    """Text and metadata were extracted from the page."""


class ArticleEnriched(ArticleContent):
    """The article with who, where and what: language, entities, countries, keywords."""

    language_confidence: float = 0.0
    entities: list[Entity] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    summary: str = ""
    duplicate_of: str | None = None


class ArticleIndexed(Event):
    """The article is searchable: the one "done" event per article."""

    title: str = ""
    indexed_at: datetime = Field(default_factory=now)


class ArticleFailed(BaseModel):
    """An entry that will not be processed: the dead letter, with the reason and the original."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    id: str | None = None
    url: str | None = None
    stream: str
    entry_id: str
    group: str
    consumer: str
    reason: str
    error: str
    permanent: bool
    deliveries: int
    original: dict[str, str]
    failed_at: datetime = Field(default_factory=now)
    original_compressed: bool = False
    """`original`'s values are zlib-compressed, base64-encoded bytes (shared/broker.py)."""
    original_bytes: int | None = None
    """The size of the original entry's values, before compression and any cut."""
    original_capped: bool = False
    """The original was cut to NEWSFLOW_DEAD_ORIGINAL_MAX_BYTES: kept to be read, not retried."""


class WatchMatched(Event):
    """A watch matched a newly indexed article: one event per (watch, article); `id` and `url`
    are the article's. Delivered at least once, keyed by `key`."""

    watch_id: str
    watch_name: str = ""
    title: str = ""
    published: datetime | None = None
    source: str | None = None
    language: str = "und"
    countries: list[str] = Field(default_factory=list)
    snippet: str = ""
    story: str = ""
    """The id of the story's first article (the article itself unless it is a near-duplicate)."""
    indexed_at: datetime | None = None

    @property
    def key(self) -> str:
        """The idempotency key of its deliveries: the same for every repeat."""
        return f"{self.watch_id}:{self.id}"
