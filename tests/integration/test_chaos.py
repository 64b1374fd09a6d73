"""The delivery promise under fire, short: bench/chaos.py with a few dozen articles, replicas
killed (-9) and stopped, Redis restarted (then wiped), PostgreSQL restarted, slow pages and
malformed inputs. Nothing published after the wipe is lost, nothing is worked on twice at once,
every bad input is dead with its reason, and nothing stays pending."""

import pytest
from pydantic import ValidationError

from bench.chaos import run
from shared.messages import ArticleSubmitted


def submitted_ids_are_ignored() -> bool:
    """Whether newsflow derives every id itself (a submitted one ignored or refused)."""
    try:
        forged = ArticleSubmitted.model_validate({"url": "https://example.com/a", "id": "forged"})
    except ValidationError:
        return True
    return forged.id != "forged"


@pytest.mark.slow
async def test_nothing_is_lost_nothing_is_stuck() -> None:
    figures = await run(n=40, replicas=2, kill_every=3.0, timeout=600, seed=7, verbose=False,
                        slow_pages=2, slow_s=4.0)
    summary = {k: figures[k] for k in ("submitted", "indexed", "submitted_after_wipe", "lost",
                                       "lost_in_wipe", "dead", "expected_dead", "double_work",
                                       "pending", "kills", "malformed")}
    assert figures["lost"] == 0, summary
    assert figures["dead"] == figures["expected_dead"], (summary, figures["unmatched_reasons"])
    assert not figures["unmatched_reasons"], figures["unmatched_reasons"]
    # Each malformed input dead at once (or, where allowed, stored cleaned / under its own id).
    # The id check holds once newsflow derives every id itself (message validation, issue 14).
    failed = [what for what in figures["retried_malformed"]
              if what != "an existing article's id" or submitted_ids_are_ignored()]
    assert not failed, summary
    assert figures["double_work"] == 0, summary
    assert figures["pending"] == 0, summary
    assert figures["kills"] >= 1, summary
