"""`newsflow dead …` against a real redis-server: inspect, re-drive and purge dead letters."""

import json

import pytest
import redis.asyncio as aioredis

from services.cli import pipeline
from shared.broker import DeliveryPolicy, ensure_groups
from shared.errors import PermanentError
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, FETCHED

Redis = aioredis.Redis


async def make_dead(client: Redis, settings: Settings, n: int) -> list[str]:
    """n entries of articles:fetched read by the parser group and dead-lettered."""
    await ensure_groups(client)
    policy = DeliveryPolicy(client, settings, "parser", "c1")
    for i in range(n):
        await client.xadd(FETCHED.name, {DATA_FIELD: json.dumps({"id": f"a{i}", "html": "x"})})
    read = await client.xreadgroup("parser", "c1", {FETCHED.name: ">"}, count=n)
    for entry_id, fields in read[0][1]:
        await policy.dead_letter(FETCHED.name, "parser", entry_id, fields,
                                 PermanentError("too slow"), permanent=True, deliveries=1)
    return [entry_id.decode() for entry_id, _ in await client.xrange(DEAD.name)]


async def test_list_and_retry_one_puts_its_original_back(
    redis_client: Redis, settings: Settings
) -> None:
    dead_ids = await make_dead(redis_client, settings, 3)
    letters = await pipeline.dead_letters(redis_client)
    assert [f.id for _, f in letters] == ["a2", "a1", "a0"]  # newest first
    assert letters[0][1].reason == "PermanentError: too slow"
    assert await pipeline.retry_dead(redis_client, [dead_ids[0]]) == 1
    assert await redis_client.xlen(DEAD.name) == 2
    newest = (await redis_client.xrevrange(FETCHED.name, count=1))[0][1]
    assert json.loads(newest[DATA_FIELD.encode()])["id"] == "a0"  # as it was, to be read again
    assert (await redis_client.xinfo_groups(FETCHED.name))[0]["lag"] == 1


async def test_retry_all_purge_and_an_unknown_id(redis_client: Redis, settings: Settings) -> None:
    await make_dead(redis_client, settings, 2)
    with pytest.raises(KeyError, match="no dead letter 1-1"):
        await pipeline.retry_dead(redis_client, ["1-1"])
    assert await pipeline.retry_dead(redis_client, None) == 2
    assert await redis_client.xlen(DEAD.name) == 0
    await make_dead(redis_client, settings, 1)
    assert await pipeline.purge_dead(redis_client) == 1
    assert await redis_client.xlen(DEAD.name) == 0


async def test_retry_and_find_by_article_id(redis_client: Redis, settings: Settings) -> None:
    dead_ids = await make_dead(redis_client, settings, 3)
    entry_id, failed = await pipeline.find_dead(redis_client, "a1")
    assert entry_id == dead_ids[1] and failed.id == "a1"
    assert (await pipeline.find_dead(redis_client, dead_ids[2]))[1].id == "a2"
    assert await pipeline.retry_dead(redis_client, ["a1"]) == 1
    newest = (await redis_client.xrevrange(FETCHED.name, count=1))[0][1]
    assert json.loads(newest[DATA_FIELD.encode()])["id"] == "a1"
    with pytest.raises(KeyError, match="no dead letter a1"):
        await pipeline.retry_dead(redis_client, ["a1"])


async def test_a_large_original_is_kept_compressed_and_a_huge_one_cut(
    redis_client: Redis, settings: Settings
) -> None:
    from shared.broker import unpack_original

    settings = settings.model_copy(update={"dead_original_max_bytes": 200_000})
    await ensure_groups(redis_client)
    policy = DeliveryPolicy(redis_client, settings, "parser", "c1")
    page = "<p>" + "news " * 20_000 + "</p>"  # 100 KB
    huge = "<p>" + "x" * 3_000_000 + "</p>"  # 3 MB
    for n, html in enumerate((page, huge)):
        await redis_client.xadd(FETCHED.name, {DATA_FIELD: json.dumps({"id": f"b{n}",
                                                                       "html": html})})
    read = await redis_client.xreadgroup("parser", "c1", {FETCHED.name: ">"}, count=2)
    for entry_id, fields in read[0][1]:
        await policy.dead_letter(FETCHED.name, "parser", entry_id, fields,
                                 PermanentError("no"), permanent=True, deliveries=1)
    letters = dict(await pipeline.dead_letters(redis_client))
    (big_id, big), (whole_id, whole) = sorted(letters.items(), reverse=True)
    assert whole.original_compressed and not whole.original_capped
    assert json.loads(unpack_original(whole)[DATA_FIELD.encode()])["html"] == page
    assert big.original_capped and big.original_bytes and big.original_bytes > 3_000_000
    assert len(unpack_original(big)[DATA_FIELD.encode()]) == 200_000
    # What Redis holds for both is a small fraction of the pages.
    assert await redis_client.memory_usage(DEAD.name) < 100_000
    with pytest.raises(ValueError, match="cannot be retried"):
        await pipeline.retry_dead(redis_client, [big_id])
    assert await pipeline.retry_dead(redis_client, [whole_id]) == 1
    newest = (await redis_client.xrevrange(FETCHED.name, count=1))[0][1]
    assert json.loads(newest[DATA_FIELD.encode()])["html"] == page


async def test_the_janitor_drops_old_dead_letters_and_keeps_at_most_dead_max(
    redis_client: Redis, settings: Settings
) -> None:
    import time

    from shared.janitor import trim_dead_letters

    day_ms = 86_400_000
    now_ms = int(time.time() * 1000)
    for age_days in (40, 35, 2, 1):
        await redis_client.xadd(DEAD.name, {DATA_FIELD: "{}"}, id=f"{now_ms - age_days * day_ms}-0")
    for _ in range(3):
        await redis_client.xadd(DEAD.name, {DATA_FIELD: "{}"})
    settings = settings.model_copy(update={"dead_retention_days": 30, "dead_max": 4})
    assert await trim_dead_letters(redis_client, settings) == 3
    left = [e for e, _ in await redis_client.xrange(DEAD.name)]
    assert len(left) == 4 and left[0] == f"{now_ms - 1 * day_ms}-0".encode()


def test_the_cli_takes_an_article_id_and_caps_what_it_prints(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from typer.testing import CliRunner

    from services.cli.main import app

    async def setup() -> None:
        client: Redis = aioredis.from_url(settings.redis_url)
        await client.flushall()
        await ensure_groups(client)
        policy = DeliveryPolicy(client, settings, "parser", "c1")
        body = json.dumps({"id": "big", "html": "y" * 50_000})
        await client.xadd(FETCHED.name, {DATA_FIELD: body})
        read = await client.xreadgroup("parser", "c1", {FETCHED.name: ">"}, count=1)
        [(entry_id, fields)] = read[0][1]
        await policy.dead_letter(FETCHED.name, "parser", entry_id, fields,
                                 PermanentError("no"), permanent=True, deliveries=1)
        await client.aclose()

    asyncio.run(setup())
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    runner = CliRunner()
    shown = runner.invoke(app, ["dead", "show", "big"])
    assert shown.exit_code == 0, shown.output
    letter = json.loads(shown.output)
    assert letter["id"] == "big" and "more characters; --full for all" in letter["original"][
        DATA_FIELD]
    assert len(shown.output) < 5_000
    full = json.loads(runner.invoke(app, ["dead", "show", "big", "--full"]).output)
    assert json.loads(full["original"][DATA_FIELD])["html"] == "y" * 50_000
    assert "article id" in runner.invoke(app, ["dead", "retry", "--help"]).output
    missing = runner.invoke(app, ["dead", "retry", "0123456789abcdef0123"])
    assert missing.exit_code == 1 and "no dead letter" in missing.output
    retried = runner.invoke(app, ["dead", "retry", "big"])
    assert retried.exit_code == 0 and "retried 1" in retried.output
