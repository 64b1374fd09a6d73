"""What an operator sees: /health and /metrics of a running stage, and JSON log lines."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from shared.messages import ArticleEnriched
from shared.streams import DATA_FIELD, ENRICHED, INDEXED
from tests.servers import PostgresServer, RedisServer, free_port


def test_a_stage_serves_health_and_metrics_and_logs_json(
    redis_server: RedisServer, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "DATABASE_URL": postgres_server.url,
           "NEWSFLOW_METRICS_PORT": str(port), "NEWSFLOW_API_HOST": "127.0.0.1",
           "NEWSFLOW_LOG_FORMAT": "json", "NEWSFLOW_POLL_MS": "100"}
    log = tmp_path / "indexer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "indexer"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 204:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        article = ArticleEnriched(id="obs1", url="https://example.com/a", title="Observed",
                                  text="Some text.", language="en")
        client.xadd(ENRICHED.name, {DATA_FIELD: article.model_dump_json()})
        while not client.xlen(INDEXED.name):
            assert time.monotonic() < deadline + 30, log.read_text()
            time.sleep(0.1)
        time.sleep(0.2)
        exposed = httpx.get(f"{base}/metrics").text
    finally:
        proc.terminate()
        proc.wait(30)
        client.close()

    assert 'newsflow_entries_total{outcome="processed",stage="indexer"} 1.0' in exposed
    assert 'newsflow_processing_seconds_count{stage="indexer"} 1.0' in exposed
    assert "newsflow_stream_pending" in exposed and "newsflow_stream_lag" in exposed
    assert "faststream_received_messages_total" in exposed
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    indexed = [line for line in lines if line["message"].startswith("indexed obs1")]
    assert len(indexed) == 1, lines
    assert indexed[0]["service"] == "indexer" and indexed[0]["stage"] == "indexer"
    assert indexed[0]["article_id"] == "obs1" and indexed[0]["entry_id"]
    assert indexed[0]["elapsed_ms"] >= 0 and indexed[0]["level"] == "info"
