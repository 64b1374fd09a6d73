"""The events that flow between the stages: frozen pydantic models, named as facts.

Rules (see README, "Message contracts"): fields are added, never renamed or reused; every event
carries `schema_version`, and a reader refuses (to the dead letters) a version it does not know.
Every event carries the article id, the submitted URL and a `trace` of when each stage finished.
"""

import base64
import hashlib
import zlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

SCHEMA_VERSION = 1

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
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
         if not k.lower().startswith(_TRACKING_PARAMS)]
    )
    return urlunsplit((scheme, host, parts.path or "/", query, ""))


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


class ArticleSubmitted(Event):
    """Someone asked for an article: a URL to fetch, or raw HTML (with or without its URL)."""

    id: str = ""
    html: Html | None = None
    refresh: bool = False
    source: str = "api"

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("id"):
            if not data.get("url") and data.get("html") is None:
                raise ValueError("an article needs a url or html")
            html = data.get("html")
            html = _decompress_html(html) if html is not None else None
            data = {**data, "id": article_id(data.get("url"), html)}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {url!r}")
            return url.strip()
        return url


class ArticleFetched(Event):
    """The page is here: the HTML as served, and how it was served."""

    final_url: str | None = None
    status: int = 200
    content_type: str = "text/html"
    html: Html
    size_bytes: int = 0
    elapsed_ms: float = 0.0
    fetched_at: datetime = Field(default_factory=now)


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
