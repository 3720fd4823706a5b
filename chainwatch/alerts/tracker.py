"""Applies readings to each position's alert state, durably: the level and its message commit together."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import structlog

from chainwatch.alerts.message import alert_text
from chainwatch.alerts.state import Thresholds, next_state
from chainwatch.model import Alert, Level, PositionKey, Reading, Record
from chainwatch.store import LevelChange, PendingMessage, Store, StoredLevel

log = structlog.get_logger(__name__)


class WatchPolicy(Record, frozen=True, kw_only=True):
    """How one watched account is alerted: where, under which name, at which thresholds."""

    thresholds: Thresholds
    label: str | None = None
    chat_id: int | None = None


class Tracker:
    def __init__(
        self,
        store: Store,
        policy_of: Callable[[str], WatchPolicy],
        levels: Mapping[PositionKey, StoredLevel],
        on_queued: Callable[[], None],
    ) -> None:
        self._store = store
        self._policy_of = policy_of
        self._levels = dict(levels)
        self._on_queued = on_queued

    @classmethod
    async def load(cls, store: Store, policy_of: Callable[[str], WatchPolicy], on_queued: Callable[[], None]) -> Tracker:
        """A tracker that remembers every level stored before a restart, so nothing is alerted twice."""
        return cls(store, policy_of, await store.levels(), on_queued)

    def level_of(self, key: PositionKey) -> Level | None:
        stored = self._levels.get(key)
        return None if stored is None else stored.level

    def forget_after(self, block: int) -> None:
        """Drops levels stored at blocks beyond `block` (a devnet reset, a database from another chain): they
        would make every newer reading look stale. Those positions are judged afresh."""
        stale = [key for key, stored in self._levels.items() if stored.block > block]
        for key in stale:
            del self._levels[key]
        if stale:
            log.warning("tracker.levels_from_the_future", positions=len(stale), head=block)

    async def observe(self, readings: Iterable[Reading]) -> list[Alert]:
        """Applies a pass of readings; every change of level and its message commit in one transaction."""
        changes: list[LevelChange] = []
        alerts: list[Alert] = []
        # Riskiest first: among alerts of equal urgency the outbox sends the older, so this is who hears first.
        for reading in sorted(readings, key=lambda r: r.health_factor):
            change, alert = self._judge(reading)
            if change is not None:
                changes.append(change)
            if alert is not None:
                alerts.append(alert)
        if changes:
            await self._store.record(changes)
        for change in changes:
            self._levels[change.key] = change.level
        for alert in alerts:
            log.info(
                "alert.queued",
                kind=alert.kind.value,
                position=alert.reading.key.as_text(),
                health_factor=round(alert.reading.health_factor, 6),
                block=alert.reading.block,
            )
        if alerts:
            self._on_queued()
        return alerts

    def _judge(self, reading: Reading) -> tuple[LevelChange | None, Alert | None]:
        """The level change to store (None when the level is unchanged) and the alert it causes."""
        key = reading.key
        stored = self._levels.get(key)
        if stored is not None and reading.block < stored.block:
            return None, None  # an older view than one already acted on (e.g. a late batch) must not undo it
        policy = self._policy_of(key.account)
        transition = next_state(None if stored is None else stored.level, reading, policy.thresholds)
        new = StoredLevel(level=transition.level, health_factor=reading.health_factor, block=reading.block)
        if stored is not None and stored.level == new.level and transition.alert is None:
            self._levels[key] = new  # unchanged level: keep the figure in memory, spare the disk a write
            return None, None
        if transition.alert is None:
            return LevelChange(key=key, level=new), None
        alert = Alert(
            kind=transition.alert,
            reading=reading,
            threshold=transition.threshold,
            label=policy.label,
            chat_id=policy.chat_id,
        )
        message = PendingMessage(priority=alert.priority, chat_id=alert.chat_id, text=alert_text(alert), kind=alert.kind.value)
        return LevelChange(key=key, level=new, message=message), alert
