"""A warm restart's re-read of every watched position, done after subscribing, riskiest first, slice by slice.

A restart with a database already knows each position's last health, so it need not read all of them before it
listens: at 100,000 positions that first read takes most of a minute, during which no block would be heard. The
engine subscribes first, then reads the positions in the order of their stored health, one slice per pass, with
each block's own events going ahead of the next slice: the position most likely to have crossed while chainwatch
was down is told first. Pure: it only says which targets come next.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterable

from chainwatch.index import Target


class CatchUp:
    """The targets still to be read since the restart, riskiest first; `take` hands out the next slice."""

    def __init__(self, riskiest_first: Iterable[Target], *, slice_size: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if slice_size < 1:
            raise ValueError("slice_size must be >= 1")
        self._left = deque(riskiest_first)
        self._owed: set[Target] = set()  # handed out, and not yet read (their read failed and is retried)
        self.total = len(self._left)
        self._slice_size = slice_size
        self._monotonic = monotonic
        self._resume_at = 0.0
        self.started = monotonic()

    def take(self, still_wanted: Callable[[Target], bool]) -> list[Target]:
        """The next slice: up to `slice_size` targets `still_wanted` says still need their first read (a target
        unwatched since, or already read for an event of its own, is dropped without counting)."""
        taken: list[Target] = []
        while self._left and len(taken) < self._slice_size:
            target = self._left.popleft()
            if still_wanted(target):
                taken.append(target)
        self._owed.update(taken)
        return taken

    def settle(self, unread: Collection[Target]) -> None:
        """After a pass: of the targets handed out, only those in `unread` (its failed reads) are still owed."""
        self._owed.intersection_update(unread)

    def pause(self, seconds: float) -> None:
        """A slice's read failed (the node is in trouble): hand out no new slice for `seconds`; the failed one is
        retried as any failed read is, so the catch-up does not pile every target onto a node that cannot answer."""
        self._resume_at = self._monotonic() + seconds

    def ready(self) -> bool:
        """Whether a slice may be taken now."""
        return bool(self._left) and self._monotonic() >= self._resume_at

    def seconds_until_ready(self) -> float:
        return max(0.0, self._resume_at - self._monotonic())

    @property
    def has_slices(self) -> bool:
        return bool(self._left)

    @property
    def done(self) -> bool:
        """Every target handed out, and every one of them read."""
        return not self._left and not self._owed

    @property
    def left(self) -> int:
        return len(self._left)
