"""/health's verdict: each way it can be unhealthy, and healthy."""

from __future__ import annotations

import pytest

from chainwatch.config import MetricsConfig
from chainwatch.health import HealthFacts, OutboxStats, verdict

CONFIG = MetricsConfig(listen="127.0.0.1:0", stall_seconds=60, max_lag_blocks=10, max_outbox_age_seconds=120)
FRESH = HealthFacts(seconds_since_head=1.0, head_seen=100, head_processed=99,
                    outbox={"WARN": OutboxStats(count=2, oldest_age_seconds=3.0)})  # fmt: skip


def test_fresh_head_keeping_up_and_draining_is_healthy() -> None:
    """A head a second ago, one block behind, messages a few seconds old: no reason."""
    assert verdict(FRESH, CONFIG) == []


@pytest.mark.parametrize(
    "change, says",
    [({"seconds_since_head": 61.0}, "no new head for 61 s"), ({"seconds_since_head": None}, "no new head for ever"),
     ({"head_processed": 89}, "11 blocks behind"),
     ({"outbox": {"REPLY": OutboxStats(count=1, oldest_age_seconds=121.0)}}, "waits for 121 s")],
)  # fmt: skip
def test_each_reason(change: dict[str, object], says: str) -> None:
    """A stalled head, processing far behind, or an old unsent message each make it unhealthy, saying which."""
    import msgspec

    (reason,) = verdict(msgspec.structs.replace(FRESH, **change), CONFIG)
    assert says in reason


def test_an_empty_kind_does_not_count_as_old() -> None:
    """A kind with no message left has no age to judge."""
    facts = HealthFacts(seconds_since_head=1.0, head_seen=5, head_processed=5,
                        outbox={"WARN": OutboxStats(count=0, oldest_age_seconds=999.0)})  # fmt: skip
    assert verdict(facts, CONFIG) == []
