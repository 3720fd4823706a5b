"""Applies readings to each (chat, position)'s alert state, durably: the level and its message commit together.

One reading of a position fans out to every chat that watches it; each chat has its own thresholds, level,
mutes and messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import structlog

from chainwatch import metrics
from chainwatch.alerts.buttons import alert_buttons
from chainwatch.alerts.directory import NO_CHAT, Directory, Subscription
from chainwatch.alerts.level_book import LevelBook
from chainwatch.alerts.message import alert_text, unpriced_text
from chainwatch.alerts.state import level_of, next_state
from chainwatch.index import Target
from chainwatch.model import Alert, AlertKind, Level, PositionKey, Reading
from chainwatch.stage_timings import TIMINGS
from chainwatch.store import ChatPosition, LevelChange, PendingMessage, Store, StoredLevel

log = structlog.get_logger(__name__)


class Tracker:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        levels: Mapping[ChatPosition, StoredLevel],
        on_queued: Callable[[], None],
        *,
        buttons: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._directory = directory
        self._levels = LevelBook(levels)
        self._on_queued = on_queued
        self._buttons = buttons  # only when the bot answers them
        self._clock = clock
        # Levels last set by blocks since replaced: (chat, position) -> the common ancestor of the two branches.
        self._orphaned: dict[ChatPosition, int] = {}

    @classmethod
    async def load(
        cls, store: Store, directory: Directory, on_queued: Callable[[], None], *, buttons: bool = False
    ) -> Tracker:
        """A tracker that remembers every level stored before a restart, so nothing is alerted twice."""
        return cls(store, directory, await store.levels(), on_queued, buttons=buttons)

    def set_directory(self, directory: Directory) -> None:
        """Takes a new directory; levels of (chat, address) pairs it no longer has are forgotten."""
        self._directory = directory
        gone = [key for key in self._levels if not directory.watched_by(key.chat_id, key.key.account)]
        for key in gone:
            del self._levels[key]

    def orphan_levels_after(self, ancestor: int) -> set[PositionKey]:
        """Blocks above `ancestor` were replaced: levels they set are judged again on the canonical chain (their
        next reading is taken whatever its block, and a level that no longer holds is retracted)."""
        positions = set()
        for slot, stored in self._levels.items():
            if stored.block > ancestor:
                self._orphaned[slot] = min(ancestor, self._orphaned.get(slot, ancestor))
                positions.add(slot.key)
        return positions

    def riskiest_first(self, targets: Iterable[Target]) -> list[Target]:
        """`targets` by the lowest health stored for any of their positions; never-read ones last."""
        lowest = self._levels.lowest_health
        return sorted(targets, key=lambda t: (lowest(t.protocol, t.account), t))

    def positions_of(self, chat_id: int) -> int:
        """How many positions this chat's alert state covers."""
        return sum(1 for key in self._levels if key.chat_id == chat_id)

    def positions_count(self) -> int:
        """How many distinct positions any chat's alert state covers."""
        return len({key.key for key in self._levels})

    def level_of(self, key: ChatPosition) -> Level | None:
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

    async def tell_unpriced(self, key: PositionKey, reason: str, failures: int, block: int) -> None:
        """Tells every chat watching `key` (unless muted) that it cannot be priced: never silence taken for health."""
        await self._notify(key, AlertKind.UNPRICED, block,
                           lambda s: unpriced_text(key, s.label, reason, failures, block))  # fmt: skip

    async def tell_priced(self, reading: Reading) -> None:
        """Tells the chats told of `tell_unpriced` that the position reads again, with its health."""

        def text(subscription: Subscription) -> str:
            thresholds = self._directory.thresholds(subscription, reading.key)
            return alert_text(Alert(kind=AlertKind.PRICED, reading=reading, threshold=thresholds.warn,
                                    label=subscription.label))  # fmt: skip

        await self._notify(reading.key, AlertKind.PRICED, reading.block, text)

    async def _notify(self, key: PositionKey, kind: AlertKind, block: int, text: Callable[[Subscription], str]) -> None:
        now = self._clock()
        notices = []
        for subscription in self._directory.subscribers(key):
            if self._directory.silences(subscription, kind, now):
                continue
            chat = None if subscription.chat_id == NO_CHAT else subscription.chat_id
            buttons = alert_buttons(key) if self._buttons and chat is not None else ()
            notices.append((key, block, PendingMessage(priority=kind.priority, chat_id=chat, text=text(subscription),
                                                       kind=kind.value, buttons=buttons)))  # fmt: skip
        if notices:
            await self._store.queue_notices(notices)
            log.warning("alert.position_unpriced" if kind is AlertKind.UNPRICED else "alert.position_priced",
                        position=key.as_text(), block=block, chats=len(notices))  # fmt: skip
            self._on_queued()

    def screen_line(self, key: PositionKey) -> float | None:
        """The highest warn line among the chats watching `key` (every other line is below it); None when no chat
        watches it or one of them is already at a level, or was set by a replaced block: those are always read."""
        line = None
        for subscription in self._directory.subscribers(key):
            slot = ChatPosition(chat_id=subscription.chat_id, key=key)
            stored = self._levels.get(slot)
            if (stored is not None and stored.level != Level.OK) or slot in self._orphaned:
                return None
            warn = self._directory.thresholds(subscription, key).warn
            line = warn if line is None else max(line, warn)
        return line

    def would_alert(self, reading: Reading) -> bool:
        """Whether observing `reading` would alert some chat (nothing is changed by asking)."""
        now = self._clock()
        for subscription in self._directory.subscribers(reading.key):
            stored = self._levels.get(ChatPosition(chat_id=subscription.chat_id, key=reading.key))
            if stored is not None and reading.block < stored.block:
                continue
            thresholds = self._directory.thresholds(subscription, reading.key)
            transition = next_state(None if stored is None else stored.level, reading, thresholds)
            if transition.alert is not None and not self._directory.silences(subscription, transition.alert, now):
                return True
        return False

    async def observe(self, readings: Iterable[Reading]) -> list[Alert]:
        """Applies a pass of readings; every change of level and its message commit in one transaction."""
        changes: list[LevelChange] = []
        alerts: list[Alert] = []
        now = self._clock()
        # Riskiest first: among alerts of equal urgency the outbox sends the older, so this is who hears first.
        with TIMINGS.timed("evaluate"):
            for reading in sorted(readings, key=lambda r: r.health_factor):
                for subscription in self._directory.subscribers(reading.key):
                    change, alert = self._judge(reading, subscription, now)
                    if change is not None:
                        changes.append(change)
                    if alert is not None:
                        alerts.append(alert)
        if changes:
            with TIMINGS.timed("commit"):
                await self._store.record(changes)
        for change in changes:
            self._levels[ChatPosition(chat_id=change.chat_id, key=change.key)] = change.level
        for alert in alerts:
            if (latency := metrics.CHAIN.since(alert.reading.block)) is not None:
                metrics.BLOCK_TO_QUEUED.observe(latency)
            # Per alert only at debug: at a thousand alerts a pass, a line each costs more than queueing them.
            log.debug("alert.queued", kind=alert.kind.value, position=alert.reading.key.as_text(),
                      health_factor=round(alert.reading.health_factor, 6), block=alert.reading.block)  # fmt: skip
        if alerts:
            kinds: dict[str, int] = {}
            for alert in alerts:
                kinds[alert.kind.value] = kinds.get(alert.kind.value, 0) + 1
            log.info("alerts.queued", block=max(a.reading.block for a in alerts), count=len(alerts), **kinds)
        if alerts:
            self._on_queued()
        return alerts

    def _judge(self, reading: Reading, subscription: Subscription, now: float) -> tuple[LevelChange | None, Alert | None]:
        """The level change to store (None when the level is unchanged) and the alert it causes."""
        key = reading.key
        chat = subscription.chat_id
        slot = ChatPosition(chat_id=chat, key=key)
        stored = self._levels.get(slot)
        ancestor = self._orphaned.pop(slot, None)
        if stored is not None and ancestor is None and reading.block < stored.block:
            return None, None  # an older view than one already acted on (e.g. a late batch) must not undo it
        thresholds = self._directory.thresholds(subscription, key)
        if stored is not None and ancestor is not None:
            return self._judge_replaced(reading, subscription, stored, ancestor, now)
        transition = next_state(None if stored is None else stored.level, reading, thresholds)
        new = StoredLevel(level=transition.level, health_factor=reading.health_factor, block=reading.block)
        if stored is not None and stored.level == new.level and transition.alert is None:
            self._levels[slot] = new  # unchanged level: keep the figure in memory, spare the disk a write
            return None, None
        if transition.alert is None or self._directory.silences(subscription, transition.alert, now):
            # Muted: the level is still tracked (so nothing is replayed on unmute), only the message is held back.
            return LevelChange(chat_id=chat, key=key, level=new), None
        alert = Alert(
            kind=transition.alert,
            reading=reading,
            threshold=transition.threshold,
            label=subscription.label,
            chat_id=None if chat == NO_CHAT else chat,
        )
        message = PendingMessage(
            priority=alert.priority, chat_id=alert.chat_id, text=alert_text(alert), kind=alert.kind.value,
            buttons=alert_buttons(key) if self._buttons and chat != NO_CHAT else (),
        )  # fmt: skip
        return LevelChange(chat_id=chat, key=key, level=new, message=message), alert

    def _judge_replaced(
        self, reading: Reading, subscription: Subscription, orphaned: StoredLevel, ancestor: int, now: float
    ) -> tuple[LevelChange | None, Alert | None]:
        """The first canonical reading of a level set by a replaced block: worse alerts as usual; better is told
        as a retraction (once, and only to a chat that heard the replaced alert); the same level stays quiet."""
        key, chat = reading.key, subscription.chat_id
        thresholds = self._directory.thresholds(subscription, key)
        level = level_of(reading.health_factor, thresholds)  # no hysteresis: the earlier level never was
        new = StoredLevel(level=level, health_factor=reading.health_factor, block=reading.block)
        if level == orphaned.level:
            return LevelChange(chat_id=chat, key=key, level=new), None
        kind = AlertKind.entering(level) if level > orphaned.level else AlertKind.REPLACED
        if self._directory.silences(subscription, kind, now):
            return LevelChange(chat_id=chat, key=key, level=new), None
        alert = Alert(kind=kind, reading=reading, threshold=thresholds.line_of(level), label=subscription.label,
                      chat_id=None if chat == NO_CHAT else chat,
                      replaced_block=orphaned.block if kind is AlertKind.REPLACED else None)  # fmt: skip
        message = PendingMessage(
            priority=alert.priority, chat_id=alert.chat_id, text=alert_text(alert), kind=alert.kind.value,
            buttons=alert_buttons(key) if self._buttons and chat != NO_CHAT else (),
            retracts_after=ancestor if kind is AlertKind.REPLACED else None,
        )  # fmt: skip
        return LevelChange(chat_id=chat, key=key, level=new, message=message), alert
