"""One log format for every service: a readable line per article per stage, or JSON lines."""

import json
import logging
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from shared.reach import SERVER_DOWN

entry_context: ContextVar[dict[str, Any] | None] = ContextVar("entry_context", default=None)
"""Set by the delivery layer while a stage works on an entry: stage, entry_id, article_id,
started (perf_counter); for a batch, `entries` maps article id → entry id. JSON log lines carry
it, with the time spent so far."""

# Attributes every LogRecord has; anything else was passed in `extra=` and goes to JSON output.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, service, message, and any `extra=` fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = entry_context.get()
        if context:
            entry.update({k: v for k, v in context.items()
                          if k not in ("started", "entries") and v})
            entry["elapsed_ms"] = round((time.perf_counter() - context["started"]) * 1000, 1)
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if context and "entries" in context and "entry_id" not in entry:
            # A batch: the line's article names its entry.
            entry["entry_id"] = context["entries"].get(entry.get("article_id"))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class OutageInOneLine(logging.Filter):
    """Errors that a server being down causes (Redis or PostgreSQL restarting: a read, the
    janitor, a retry, a failure not recorded) are expected and recovered from by retrying: each
    is one warning line with its cause, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, SERVER_DOWN):
            return True
        message, cause = record.getMessage(), str(error)
        if not cause or cause not in message:  # a retry line names its cause already
            message = f"{message}: {type(error).__name__}" + (f": {cause}" if cause else "")
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = None
        # An article given up stays an error, whatever the cause.
        if record.levelno > logging.WARNING and getattr(record, "outcome", None) != "dead":
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class QuietProbes(logging.Filter):
    """Requests for /health and /metrics (a health check every few seconds, a scraper) are
    logged at DEBUG only: at INFO they would drown the one line per article."""

    PATHS = frozenset({"/health", "/metrics"})

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access line: (client, method, path, http version, status).
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 3 and str(args[2]).split("?")[0] in self.PATHS:
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def setup_logging(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Route every logger (ours, FastStream's, uvicorn's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    elif fmt == "plain":
        handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service:<8} %(levelname)-7s %(message)s")
        )
    handler.addFilter(OutageInOneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that chat per request: their lines would drown the one line per article.
    for noisy in ("httpx", "httpcore", "trafilatura", "htmldate", "courlan"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    access.filters[:] = [f for f in access.filters if not isinstance(f, QuietProbes)]
    access.addFilter(QuietProbes())
