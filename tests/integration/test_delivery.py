"""The delivery rules against a real redis-server: ack, retry, dead letters, reclaim."""

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from shared.broker import DeliveryPolicy, Stage, ensure_groups
from shared.errors import PermanentError, TransientError
from shared.messages import (
    ArticleEnriched,
    ArticleFailed,
    ArticleFetched,
    ArticleIndexed,
    ArticleParsed,
    article_id,
)
from shared.settings import Settings
from shared.streams import DATA_FIELD, DEAD, ENRICHED, FETCHED, INDEXED, PARSED
from tests.servers import RedisServer

Redis = aioredis.Redis


def fetched(n: int, **extra: Any) -> dict[str, str]:
    body = {"id": f"a{n}", "url": f"https://example.com/{n}", "html": "<p>x</p>", **extra}
    return {DATA_FIELD: json.dumps(body)}


def parser_stage(settings: Settings, behaviour: Callable[[ArticleFetched], None]) -> Stage:
    """A stage on the parser's stream whose handler does what the test says."""
    stage = Stage("parser", settings)
    seen: Counter[str] = Counter()

    @stage.handle(FETCHED, to=PARSED)
    async def handle(event: ArticleFetched) -> ArticleParsed:
        seen[event.id] += 1
        behaviour(event)
        return ArticleParsed(id=event.id, url=event.url, title=f"t{event.id}")

    stage.seen = seen  # type: ignore[attr-defined]
    return stage


async def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def dead(client: "Redis[bytes]") -> list[ArticleFailed]:
    return [ArticleFailed.model_validate_json(f[DATA_FIELD.encode()])
            for _, f in await client.xrange(DEAD.name)]


async def pending(client: "Redis[bytes]") -> int:
    return int((await client.xpending(FETCHED.name, "parser"))["pending"])


async def test_entries_published_before_any_replica_started_are_delivered(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    await redis_client.xadd(FETCHED.name, fetched(1))
    stage = parser_stage(settings, lambda e: None)
    async with stage.running():
        await until(lambda: redis_client.xlen(PARSED.name))
        await until(lambda: _zero(redis_client))
    out = await redis_client.xrange(PARSED.name)
    assert json.loads(out[0][1][DATA_FIELD.encode()])["title"] == "ta1"


async def _zero(client: "Redis[bytes]") -> bool:
    return await pending(client) == 0


async def test_malformed_messages_go_to_dead_letters_and_the_next_one_flows(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, {DATA_FIELD: "{not json"})
    await redis_client.xadd(FETCHED.name, {DATA_FIELD: json.dumps({"url": "https://x.org/"})})
    await redis_client.xadd(FETCHED.name, fetched(2, schema_version=99))
    await redis_client.xadd(FETCHED.name, {"url": "https://x.org/no-data-field"})
    await redis_client.xadd(FETCHED.name, fetched(3))
    stage = parser_stage(settings, lambda e: None)
    async with stage.running():
        await until(lambda: redis_client.xlen(PARSED.name))
        await until(lambda: _count(redis_client, 4))
        await until(lambda: _zero(redis_client))
    letters = await dead(redis_client)
    reasons = [f.reason for f in letters]
    assert all(f.permanent and f.deliveries == 1 and f.group == "parser" for f in letters)
    assert any("unsupported schema_version 99" in r for r in reasons), reasons
    assert any("id: Field required" in r for r in reasons), reasons
    assert letters[0].original[DATA_FIELD] == "{not json"
    assert letters[1].url == "https://x.org/" and letters[1].id == article_id("https://x.org/")
    assert stage.seen == {"a3": 1}  # type: ignore[attr-defined]


async def _count(client: "Redis[bytes]", n: int) -> bool:
    return int(await client.xlen(DEAD.name)) >= n


async def test_transient_failure_is_retried_after_the_idle_time(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    failures = {"a1": 1}

    def flaky(event: ArticleFetched) -> None:
        if failures.get(event.id):
            failures[event.id] -= 1
            raise TransientError("upstream hiccup")

    stage = parser_stage(settings, flaky)
    async with stage.running():
        await redis_client.xadd(FETCHED.name, fetched(1))
        await until(lambda: redis_client.xlen(PARSED.name))
        await until(lambda: _zero(redis_client))
    assert stage.seen["a1"] == 2  # type: ignore[attr-defined]
    assert await redis_client.xlen(DEAD.name) == 0


async def test_failure_that_never_heals_ends_in_dead_letters_after_the_budget(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    def broken(event: ArticleFetched) -> None:
        raise TransientError("still down")

    stage = parser_stage(settings, broken)
    async with stage.running():
        await redis_client.xadd(FETCHED.name, fetched(1))
        await until(lambda: _count(redis_client, 1))
        await until(lambda: _zero(redis_client))
    [letter] = await dead(redis_client)
    assert letter.deliveries == settings.max_deliveries
    assert not letter.permanent
    assert letter.reason == "TransientError: still down"
    assert letter.id == "a1"
    assert stage.seen["a1"] == settings.max_deliveries  # type: ignore[attr-defined]


async def test_permanent_error_skips_retries(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    def refuse(event: ArticleFetched) -> None:
        raise PermanentError("page over the size cap")

    stage = parser_stage(settings, refuse)
    async with stage.running():
        await redis_client.xadd(FETCHED.name, fetched(1))
        await until(lambda: _count(redis_client, 1))
    [letter] = await dead(redis_client)
    assert letter.permanent and letter.deliveries == 1
    assert stage.seen["a1"] == 1  # type: ignore[attr-defined]


async def test_entries_held_by_a_dead_replica_are_reclaimed(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, fetched(1))
    # A replica that read the entry and died before acknowledging it.
    await redis_client.xreadgroup("parser", "gone-1", {FETCHED.name: ">"}, count=10)
    assert await pending(redis_client) == 1
    stage = parser_stage(settings, lambda e: None)
    async with stage.running():
        await until(lambda: redis_client.xlen(PARSED.name))
        await until(lambda: _zero(redis_client))
    assert stage.seen["a1"] == 1  # type: ignore[attr-defined]


async def test_an_entry_whose_consumers_keep_dying_is_given_up(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, fetched(1))
    for n in range(settings.max_deliveries):
        await asyncio.sleep(settings.claim_idle_ms / 1000 + 0.05)
        if n == 0:
            await redis_client.xreadgroup("parser", "gone", {FETCHED.name: ">"}, count=1)
        else:
            await redis_client.xautoclaim(FETCHED.name, "parser", "gone", settings.claim_idle_ms)
    stage = parser_stage(settings, lambda e: None)
    async with stage.running():
        await until(lambda: _count(redis_client, 1))
        await until(lambda: _zero(redis_client))
    [letter] = await dead(redis_client)
    assert "gave up after" in letter.reason
    assert stage.seen["a1"] == 0  # type: ignore[attr-defined]


async def test_retries_back_off_exponentially(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    settings = settings.model_copy(update={"max_deliveries": 4, "claim_idle_ms": 300})
    attempts: list[float] = []

    def broken(event: ArticleFetched) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise TransientError("still down")

    stage = parser_stage(settings, broken)
    async with stage.running():
        await redis_client.xadd(FETCHED.name, fetched(1))
        await until(lambda: _count(redis_client, 1), timeout=20)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) == 4, gaps
    # Base 0.3 s doubled each time (±20 % jitter, plus up to one claim interval of lag). With
    # the lag, neighbours may come out even; two doublings apart, the growth always shows.
    assert 0.2 < gaps[0] < 0.9 and 0.45 < gaps[1] < 1.6 and 1.0 < gaps[2] < 2.8, gaps
    assert gaps[0] < gaps[2], gaps
    assert await redis_client.hlen("newsflow:retries:" + FETCHED.name) == 0


async def test_a_stopping_replica_releases_what_it_holds(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    # A long idle time: without the release, the entry would wait 30 s for a reclaimer.
    settings = settings.model_copy(update={"claim_idle_ms": 30_000})
    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, fetched(1))
    # The stopping replica read the entry and could not finish it; on shutdown its stage
    # hands back what it holds (Stage runs this after the broker stops).
    await redis_client.xreadgroup("parser", "stopping-1", {FETCHED.name: ">"}, count=10)
    stopping = DeliveryPolicy(redis_client, settings, "parser", "stopping-1")
    assert await stopping.release([FETCHED]) == 1
    [held] = await redis_client.xpending_range(FETCHED.name, "parser", "-", "+", 10)
    assert held["times_delivered"] == 1  # released, not counted as a delivery
    other = parser_stage(settings, lambda e: None)
    async with other.running():
        await until(lambda: redis_client.xlen(PARSED.name), timeout=5)
        await until(lambda: _zero(redis_client))
    assert other.seen == {"a1": 1}  # type: ignore[attr-defined]


async def test_a_batch_dead_letters_a_malformed_entry_and_a_failed_one_goes_entry_by_entry(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    stage = Stage("indexer", settings)
    calls: list[list[str]] = []

    @stage.handle_batches(ENRICHED, to=INDEXED, max_records=50)
    async def index(events: list[ArticleEnriched]) -> list[ArticleIndexed]:
        calls.append([e.id for e in events])
        if any(e.id == "bad" for e in events):
            raise PermanentError("the store refuses it")
        return [ArticleIndexed(id=e.id) for e in events]

    await ensure_groups(redis_client)
    for body in ("g0", "g1", None, "g2", "bad", "g3"):
        await redis_client.xadd(ENRICHED.name, {DATA_FIELD: ArticleEnriched(
            id=body).model_dump_json() if body else '{"no": "id"}'})
    async with stage.running():
        await until(lambda: _count(redis_client, 2))
        await until(lambda: _indexed(redis_client, 4))
        await until(lambda: _enriched_pending_zero(redis_client))
    # The malformed entry never reached the handler; the failed batch was taken again entry
    # by entry, so only the entry at fault is dead and nothing was indexed twice.
    assert calls == [["g0", "g1", "g2", "bad", "g3"], ["g0"], ["g1"], ["g2"], ["bad"], ["g3"]]
    reasons = sorted(letter.reason for letter in await dead(redis_client))
    assert "id: Field required" in reasons[1] and reasons[0] == "PermanentError: the store " \
        "refuses it", reasons
    assert await redis_client.xlen(INDEXED.name) == 4

    # A healthy batch is handled whole, with one acknowledgement.
    for n in range(5, 9):
        await redis_client.xadd(ENRICHED.name, {DATA_FIELD: ArticleEnriched(
            id=f"g{n}").model_dump_json()})
    async with stage.running():
        await until(lambda: _indexed(redis_client, 8))
        await until(lambda: _enriched_pending_zero(redis_client))
    assert calls[-1] == ["g5", "g6", "g7", "g8"]


async def test_a_handler_works_on_as_many_entries_at_once_as_its_concurrency(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    stage = Stage("parser", settings)
    busy, peak = [0], [0]

    @stage.handle(FETCHED, to=PARSED, concurrency=3)
    async def parse(event: ArticleFetched) -> ArticleParsed:
        busy[0] += 1
        peak[0] = max(peak[0], busy[0])
        await asyncio.sleep(0.05)
        busy[0] -= 1
        return ArticleParsed(id=event.id)

    await ensure_groups(redis_client)
    for n in range(20):
        await redis_client.xadd(FETCHED.name, fetched(n))
    async with stage.running():
        await until(lambda: _parsed(redis_client, 20))
        await until(lambda: _zero(redis_client))
    assert peak[0] == 3


async def _parsed(client: "Redis[bytes]", n: int) -> bool:
    return int(await client.xlen(PARSED.name)) >= n


async def test_a_stopping_replica_finishes_the_work_in_hand(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    started = asyncio.Event()
    stage = Stage("parser", settings)

    @stage.handle(FETCHED, to=PARSED)
    async def parse(event: ArticleFetched) -> ArticleParsed:
        started.set()
        await asyncio.sleep(0.3)
        return ArticleParsed(id=event.id)

    async with stage.running():
        await redis_client.xadd(FETCHED.name, fetched(1))
        await asyncio.wait_for(started.wait(), 5)
    # Stopped mid-work: the work was finished, handed on and acknowledged, not abandoned.
    assert await redis_client.xlen(PARSED.name) == 1
    assert await pending(redis_client) == 0


async def _indexed(client: "Redis[bytes]", n: int) -> bool:
    return int(await client.xlen(INDEXED.name)) >= n


async def _enriched_pending_zero(client: "Redis[bytes]") -> bool:
    return int((await client.xpending(ENRICHED.name, "indexer"))["pending"]) == 0


async def test_a_replica_started_before_redis_waits_for_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # not started yet
    settings = Settings(redis_url=server.url, claim_idle_ms=400, poll_ms=100,
                        graceful_timeout_s=5, startup_wait_s=30)
    stage = parser_stage(settings, lambda e: None)

    async def serve() -> None:
        async with stage.running():
            client: Redis[bytes] = aioredis.from_url(server.url)
            await client.xadd(FETCHED.name, fetched(1))
            await until(lambda: client.xlen(PARSED.name))
            await client.aclose()

    started = asyncio.create_task(serve())
    await asyncio.sleep(1.5)
    assert not started.done()  # waiting, not exited
    await asyncio.to_thread(server.start)
    try:
        await asyncio.wait_for(started, 20)
    finally:
        server.stop()


async def test_no_entry_is_worked_on_by_two_replicas_at_once(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    # Each entry takes far longer than the claim window, and a replica holds several (read
    # ahead) while it works on one: a reclaimer that went by idle time alone would hand them to
    # the other replica mid-work. The leases are renewed while their replica lives.
    settings = settings.model_copy(update={"claim_idle_ms": 300, "read_ahead": 4})
    working: Counter[str] = Counter()
    started: Counter[str] = Counter()
    overlaps: list[str] = []

    def replica(name: str) -> Stage:
        stage = Stage("parser", settings, consumer=name)

        @stage.handle(FETCHED, to=PARSED)
        async def slow(event: ArticleFetched) -> ArticleParsed:
            started[event.id] += 1
            working[event.id] += 1
            if working[event.id] > 1:
                overlaps.append(event.id)
            await asyncio.sleep(1.0)
            working[event.id] -= 1
            return ArticleParsed(id=event.id)

        return stage

    await ensure_groups(redis_client)
    for n in range(6):
        await redis_client.xadd(FETCHED.name, fetched(n))
    one, two = replica("replica-1"), replica("replica-2")
    async with one.running(), two.running():
        await until(lambda: _parsed(redis_client, 6), timeout=30)
        await until(lambda: _zero(redis_client))
    assert overlaps == []
    assert started == {f"a{n}": 1 for n in range(6)}, started
    assert await redis_client.xlen(PARSED.name) == 6


async def test_a_replica_that_stalled_past_its_lease_drops_the_entry(
    settings: Settings, redis_client: "Redis[bytes]"
) -> None:
    from shared.broker import Entry, Leases

    await ensure_groups(redis_client)
    await redis_client.xadd(FETCHED.name, fetched(1))
    await redis_client.xadd(FETCHED.name, fetched(2))
    read = await redis_client.xreadgroup("parser", "stalled", {FETCHED.name: ">"}, count=2)
    (mine_id, fields), (taken_id, _) = read[0][1]
    leases = Leases(redis_client, "stalled", claim_idle_ms=400)
    work = asyncio.create_task(asyncio.sleep(30))
    leases.working(Entry(FETCHED, taken_id, fields), work)
    leases.hold(Entry(FETCHED, mine_id, fields))
    await asyncio.sleep(0.5)
    # Its lease ran out while it stalled: another replica's reclaimer took one entry.
    await redis_client.xclaim(FETCHED.name, "parser", "other", 400, [taken_id])
    assert await leases.renew() == 1
    await asyncio.sleep(0)
    assert work.cancelled() and leases.is_lost(Entry(FETCHED, taken_id, fields))
    owners = {e["message_id"]: (e["consumer"], e["time_since_delivered"])
              for e in await redis_client.xpending_range(FETCHED.name, "parser", "-", "+", 10)}
    assert owners[taken_id][0] == b"other"  # not taken back
    assert owners[mine_id][0] == b"stalled" and owners[mine_id][1] < 400  # renewed
    [held] = [e for e in await redis_client.xpending_range(FETCHED.name, "parser", "-", "+", 10)
              if e["message_id"] == mine_id]
    assert held["times_delivered"] == 1  # a renewal is not a delivery
