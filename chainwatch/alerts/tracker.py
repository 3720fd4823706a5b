"""Applies readings to each position's alert state, durably: the level and its message commit together."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import structlog

from chainwatch.alerts.message import alert_text
from chainwatch.alerts.state import Thresholds, next_state
from chainwatch.model import Alert, Level, PositionKey, Reading, Record
from chainwatch.store import PendingMessage, Store, StoredLevel

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

    async def observe(self, readings: Iterable[Reading]) -> list[Alert]:
        alerts = []
        for reading in readings:
            alert = await self._observe(reading)
            if alert is not None:
                alerts.append(alert)
        if alerts:
            self._on_queued()
        return alerts

    async def _observe(self, reading: Reading) -> Alert | None:
        key = reading.key
        stored = self._levels.get(key)
        if stored is not None and reading.block < stored.block:
            return None  # an older view than one already acted on (e.g. a late batch) must not undo it
        policy = self._policy_of(key.account)
        transition = next_state(None if stored is None else stored.level, reading, policy.thresholds)
        new = StoredLevel(level=transition.level, health_factor=reading.health_factor, block=reading.block)
        if stored is not None and stored.level == new.level and transition.alert is None:
            self._levels[key] = new  # unchanged level: keep the figure in memory, spare the disk a write
            return None
        alert = None
        message = None
        if transition.alert is not None:
            alert = Alert(
                kind=transition.alert,
                reading=reading,
                threshold=transition.threshold,
                label=policy.label,
                chat_id=policy.chat_id,
            )
            message = PendingMessage(
                priority=alert.priority, chat_id=alert.chat_id, text=alert_text(alert), kind=alert.kind.value
            )
        await self._store.record(key, new, message)
        self._levels[key] = new
        if alert is not None:
            log.info(
                "alert.queued",
                kind=alert.kind.value,
                position=key.as_text(),
                health_factor=round(reading.health_factor, 6),
                block=reading.block,
            )
        return alert
