"""docs/asyncapi.json is what the code generates (regenerate: newsflow asyncapi --out …)."""

import json
from pathlib import Path

from services.cli.asyncapi import asyncapi_document
from shared.settings import Settings
from shared.streams import STREAMS

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_the_committed_document_is_up_to_date() -> None:
    generated = asyncapi_document(Settings())
    assert json.loads(COMMITTED.read_text()) == json.loads(json.dumps(generated)), (
        "docs/asyncapi.json is stale: run `newsflow asyncapi --out docs/asyncapi.json`"
    )


def test_every_stream_is_described() -> None:
    doc = asyncapi_document(Settings())
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == {s.name for s in STREAMS}
    assert {"ArticleSubmitted", "ArticleFetched", "ArticleParsed", "ArticleEnriched",
            "ArticleIndexed", "ArticleFailed"} <= set(doc["components"]["schemas"])
