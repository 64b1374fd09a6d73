"""The topology in one table: every stream, the event it carries, and the group that reads it."""

from dataclasses import dataclass

from pydantic import BaseModel

from shared.messages import (
    ArticleEnriched,
    ArticleFailed,
    ArticleFetched,
    ArticleIndexed,
    ArticleParsed,
    ArticleSubmitted,
    WatchMatched,
)


@dataclass(frozen=True)
class Stream:
    """One Redis stream: its name, the event type on it, and the consumer group reading it."""

    name: str
    event: type[BaseModel]
    group: str | None
    """The service whose replicas read it as one consumer group; None when no stage reads it."""


SUBMITTED = Stream("articles:submitted", ArticleSubmitted, group="fetcher")
FETCHED = Stream("articles:fetched", ArticleFetched, group="parser")
PARSED = Stream("articles:parsed", ArticleParsed, group="enricher")
ENRICHED = Stream("articles:enriched", ArticleEnriched, group="indexer")
INDEXED = Stream("articles:indexed", ArticleIndexed, group="watcher")
DEAD = Stream("articles:dead", ArticleFailed, group=None)
# Each (watch, article) match, for the watcher's deliveries (webhooks).
MATCHED = Stream("watches:matched", WatchMatched, group="watcher")

STREAMS: tuple[Stream, ...] = (SUBMITTED, FETCHED, PARSED, ENRICHED, INDEXED, DEAD, MATCHED)
STAGES: tuple[Stream, ...] = tuple(s for s in STREAMS if s.group)
"""The streams a stage reads, in pipeline order."""

# The field FastStream reads a message body from; plain JSON there is accepted (see README).
DATA_FIELD = "__data__"
