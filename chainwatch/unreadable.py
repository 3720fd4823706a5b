"""What could not be read, kept visible: each target's unread parts (logged when they first fail and when they
read again, not at every retry), and, after `unpriced_after` failed reads in a row, the chats told that the position
cannot be priced (and told again when it can). A failure is never taken for "healthy"."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from chainwatch import metrics
from chainwatch.alerts.tracker import Tracker
from chainwatch.index import Target
from chainwatch.model import PositionKey, Reading
from chainwatch.protocols.base import Unreadable

log = structlog.get_logger(__name__)


class UnreadableLedger:
    def __init__(self, tracker: Tracker, unpriced_after: int) -> None:
        self._tracker = tracker
        self._unpriced_after = unpriced_after
        self.parts: dict[Target, tuple[Unreadable, ...]] = {}
        self._failures: dict[PositionKey, int] = {}  # consecutive failed reads of a position (market "" = all)
        self._told_unpriced: set[PositionKey] = set()

    async def record(
        self, target: Target, parts: tuple[Unreadable, ...], readings: Sequence[Reading], block: int
    ) -> None:  # fmt: skip
        """A read of `target` left `parts` unread (none: it all read) and gave `readings`."""
        self._note(target, parts, block)
        await self._count(target, parts, readings, block)

    def forget(self, target: Target) -> None:
        """`target` is no longer watched."""
        self.parts.pop(target, None)
        for key in [k for k in self._failures if (k.protocol, k.account) == (target.protocol, target.account)]:
            del self._failures[key]
            self._told_unpriced.discard(key)
        metrics.UNREADABLE_POSITIONS.set(len(self.parts))

    def _note(self, target: Target, unreadable: tuple[Unreadable, ...], block: int) -> None:
        before = {u.market: u.reason for u in self.parts.get(target, ())}
        for part in unreadable:
            if before.get(part.market) != part.reason:
                log.error("recompute.position_unreadable", protocol=target.protocol, account=target.account,
                          market=part.market, block=block, reason=part.reason)  # fmt: skip
        for market in before.keys() - {u.market for u in unreadable}:
            log.info("recompute.position_readable", protocol=target.protocol, account=target.account, market=market,
                     block=block)  # fmt: skip
        if unreadable:
            self.parts[target] = unreadable
        else:
            self.parts.pop(target, None)
        metrics.UNREADABLE_POSITIONS.set(len(self.parts))

    async def _count(
        self, target: Target, parts: Sequence[Unreadable], readings: Sequence[Reading], block: int
    ) -> None:  # fmt: skip
        failing = {PositionKey(protocol=target.protocol, account=target.account, market=u.market): u.reason
                   for u in parts}  # fmt: skip
        for key, reason in failing.items():
            count = self._failures[key] = self._failures.get(key, 0) + 1
            if count >= self._unpriced_after and key not in self._told_unpriced:
                self._told_unpriced.add(key)
                await self._tracker.tell_unpriced(key, reason, count, block)
        mine = [k for k in self._failures if (k.protocol, k.account) == (target.protocol, target.account)]
        for key in mine:
            if key in failing:
                continue
            del self._failures[key]
            if key in self._told_unpriced:
                self._told_unpriced.discard(key)
                again = [r for r in readings if key.market in ("", r.key.market)]
                if again:
                    await self._tracker.tell_priced(min(again, key=lambda r: r.health_factor))
