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
