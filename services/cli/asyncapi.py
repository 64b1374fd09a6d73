"""The AsyncAPI document of every stream, generated from the services' own FastStream apps (what
each reads and publishes, with the message schemas), merged into one (docs/asyncapi.json)."""

import importlib
from typing import Any

from shared.messages import ArticleFailed
from shared.settings import Settings
from shared.streams import DEAD

STAGE_MODULES = ("services.fetcher.main", "services.parser.main", "services.enricher.main",
                 "services.indexer.main", "services.watcher.main")


def _strip_consumer(channel: dict[str, Any]) -> dict[str, Any]:
    # The consumer name is per replica (host-pid): not part of the contract.
    redis = channel.get("bindings", {}).get("redis", {})
    redis.pop("consumerName", None)
    return channel


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """One AsyncAPI 3.0 document for the whole pipeline."""
    doc: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "newsflow",
            "version": "0.1.0",
            "description": (
                "Article events on Redis Streams: one stream per hop, one consumer group per "
                "service. Every message is plain JSON in the entry field `__data__`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {"host": "redis:6379", "protocol": "redis",
                      "description": "The Redis server named by REDIS_URL."},
        },
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {}},
    }
    for module in STAGE_MODULES:
        app = importlib.import_module(module).create_app(settings)
        spec = app.schema.to_specification().to_jsonable()
        for name, channel in spec.get("channels", {}).items():
            if channel.get("address", "").startswith("/"):
                continue  # the stage's own HTTP routes (/health, /metrics)
            channel["servers"] = [{"$ref": "#/servers/redis"}]
            doc["channels"][name] = _strip_consumer(channel)
        for name, operation in spec.get("operations", {}).items():
            if "http" not in operation.get("bindings", {}):
                doc["operations"][name] = operation
        for part in ("messages", "schemas"):
            doc["components"][part].update(spec.get("components", {}).get(part, {}))
    # Dead letters are written by the delivery layer, not by a handler: described by hand.
    schema = ArticleFailed.model_json_schema(ref_template="#/components/schemas/{model}")
    doc["components"]["schemas"]["ArticleFailed"] = schema
    doc["components"]["messages"]["articles:dead:Message"] = {
        "title": "articles:dead:Message",
        "payload": {"$ref": "#/components/schemas/ArticleFailed"},
    }
    doc["channels"]["articles:dead:Publisher"] = {
        "address": DEAD.name,
        "description": "Entries any stage gave up on, with the reason and the original fields.",
        "messages": {"Message": {"$ref": "#/components/messages/articles:dead:Message"}},
        "bindings": {"redis": {"channel": DEAD.name, "method": "xadd"}},
    }
    doc["operations"]["articles:dead:Publisher"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/articles:dead:Publisher"},
        "messages": [{"$ref": "#/channels/articles:dead:Publisher/messages/Message"}],
    }
    return doc
