"""The delivery promise under fire, short: bench/chaos.py with a few dozen articles, replicas
killed (-9) and stopped, Redis and PostgreSQL restarted. Every article ends indexed once or in
the dead letters with the right reason, and nothing stays pending."""

import pytest

from bench.chaos import run


@pytest.mark.slow
async def test_nothing_is_lost_nothing_is_stuck() -> None:
    figures = await run(n=40, replicas=2, kill_every=2.0, timeout=300, seed=7, verbose=False)
    summary = {k: figures[k] for k in ("submitted", "indexed", "unique_in_index", "lost", "dead",
                                       "expected_dead", "pending", "kills")}
    assert figures["lost"] == 0, summary
    assert figures["indexed"] == figures["unique_in_index"] == 40, summary
    assert figures["dead"] == figures["expected_dead"], (summary, figures["unmatched_reasons"])
    assert not figures["unmatched_reasons"], figures["unmatched_reasons"]
    assert figures["pending"] == 0, summary
    assert figures["kills"] >= 1, summary
