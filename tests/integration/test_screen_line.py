"""The line screening is held to: the highest warn among the chats watching a position, or none at all."""

from __future__ import annotations

from pathlib import Path

from chainwatch.alerts.directory import Directory, Subscription
from chainwatch.alerts.state import Thresholds
from chainwatch.alerts.tracker import Tracker
from chainwatch.chat_settings import ANY, ThresholdRule
from chainwatch.model import Level, PositionKey
from chainwatch.store import ChatPosition, StoredLevel, open_store

A, B = "0x" + "aa" * 20, "0x" + "bb" * 20
KEY = PositionKey(protocol="aave", account=A)


def directory() -> Directory:
    rules = [ThresholdRule(chat_id=2, address=ANY, protocol=ANY, market=ANY, warn=2.4, critical=1.3)]
    return Directory([Subscription(chat_id=1, address=A), Subscription(chat_id=2, address=A),
                      Subscription(chat_id=3, address=B, operator=True, thresholds=Thresholds(warn=4.0, critical=2.0))],
                     defaults=Thresholds(warn=1.5, critical=1.2), protocols=["aave"], rules=rules)  # fmt: skip


class TestScreenLine:
    async def test_highest_warn_none_when_alerted_unwatched_or_orphaned(self, tmp_path: Path) -> None:
        """Chat 1 (1.5) and chat 2 (2.4) watch A: 2.4. Once either is at a level, or its level was set by a
        replaced block, or nobody watches the position: no line, so it is always read."""
        async with open_store(tmp_path / "chainwatch.db") as store:
            ok = StoredLevel(level=Level.OK, health_factor=3.0, block=5)
            tracker = Tracker(store, directory(), {ChatPosition(chat_id=1, key=KEY): ok}, lambda: None)
            assert tracker.screen_line(KEY) == 2.4
            assert tracker.screen_line(PositionKey(protocol="aave", account=B)) == 4.0
            assert tracker.screen_line(PositionKey(protocol="aave", account="0x" + "cc" * 20)) is None
            warned = StoredLevel(level=Level.WARN, health_factor=2.3, block=6)
            alerted = Tracker(store, directory(), {ChatPosition(chat_id=2, key=KEY): warned}, lambda: None)
            assert alerted.screen_line(KEY) is None
            tracker.orphan_levels_after(4)
            assert tracker.screen_line(KEY) is None
