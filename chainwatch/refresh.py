"""Risk-tiered re-reads: interest accrual moves health with no event, so positions are re-read on a schedule,
the closer to liquidation the more often. Pure: it only says which targets are due at a block.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Hashable
from typing import Annotated

from msgspec import Meta

from chainwatch.model import Record

Blocks = Annotated[int, Meta(gt=0)]


class RefreshBand(Record, frozen=True, kw_only=True):
    """Positions with a health factor below `below` are re-read every `every_blocks` blocks."""

    below: Annotated[float, Meta(gt=0)]
    every_blocks: Blocks


# Tuned for Monad's ~0.4 s blocks: ~2 s near liquidation, ~10 s when critical, ~1 min when warned, ~10 min else.
DEFAULT_BANDS = (
    RefreshBand(below=1.05, every_blocks=5),
    RefreshBand(below=1.25, every_blocks=25),
    RefreshBand(below=2.0, every_blocks=150),
)


class RefreshPolicy(Record, frozen=True, kw_only=True):
    """`[refresh]`: the bands, tightest first, and the interval for everything healthier (or debt-free).

    `market_event_min_blocks` spaces out re-reads caused by market-wide drift events (new rates or indexes,
    which a busy market emits on every action): an account read that recently is not read again for them.
    """

    every_blocks: Blocks = 1500
    bands: tuple[RefreshBand, ...] = DEFAULT_BANDS
    market_event_min_blocks: Annotated[int, Meta(ge=0)] = 25
    # Each target's due block is brought forward by up to this fraction of its interval, by a hash of the target:
    # positions read together (all of them at start) then come due over a spread of blocks, not on the same one.
    spread: Annotated[float, Meta(ge=0, lt=1)] = 0.25
    # A holder of an asset whose feed's answer is the protocol's price is not re-read for that answer when its
    # health at the new price, computed from its last read amounts, stays above its warn line by this fraction.
    screen_margin: Annotated[float, Meta(ge=0)] = 0.02

    def __post_init__(self) -> None:
        for lower, upper in zip(self.bands, self.bands[1:]):
            if not lower.below < upper.below:
                raise ValueError(f"bands must be in rising order of `below` ({lower.below} then {upper.below})")
            if lower.every_blocks > upper.every_blocks:
                raise ValueError("a riskier band must not be re-read less often than a safer one")
        if self.bands and self.bands[-1].every_blocks > self.every_blocks:
            raise ValueError("every_blocks must be at least the slowest band's")

    def interval_for(self, health_factor: float) -> int:
        for band in self.bands:
            if health_factor < band.below:
                return band.every_blocks
        return self.every_blocks

    @property
    def tightest(self) -> int:
        return self.bands[0].every_blocks if self.bands else self.every_blocks


class RefreshSchedule:
    """When each target is next due for a re-read; reading a target for any reason resets its clock."""

    def __init__(self, policy: RefreshPolicy) -> None:
        self._policy = policy
        self._due: dict[Hashable, int] = {}
        self._failures: dict[Hashable, int] = {}  # consecutive reads that left (part of) the target unread
        self._heap: list[tuple[int, int, Hashable]] = []
        self._tiebreak = 0

    def record(self, target: Hashable, block: int, health_factor: float, *, partly_unread: bool = False) -> None:
        """`target` was read at `block` with (worst) `health_factor`; `partly_unread`: some of it could not be read,
        so it is due again at the sooner of its band's interval and its failure backoff."""
        due = block + self._spread(target, self._policy.interval_for(health_factor))
        if partly_unread:
            due = min(due, block + self._backoff(target))
        else:
            self._failures.pop(target, None)
        self._set(target, due)

    def _spread(self, target: Hashable, interval: int) -> int:
        """`interval`, shortened by the target's own share of the spread (stable across runs and processes)."""
        window = int(interval * self._policy.spread)
        return interval - zlib.crc32(repr(target).encode()) % (window + 1) if window else interval

    def record_failure(self, target: Hashable, block: int) -> None:
        """`target` could not be read at `block`: try again after a backoff that doubles with each consecutive
        failure, from the riskiest band's interval up to `every_blocks`, so a read that fails every time (a
        reverting oracle) costs a few calls an hour rather than one every pass."""
        self._set(target, block + self._backoff(target))

    def _backoff(self, target: Hashable) -> int:
        failures = self._failures[target] = self._failures.get(target, 0) + 1
        return min(self._policy.tightest << min(failures - 1, 32), self._policy.every_blocks)

    def forget(self, target: Hashable) -> None:
        """`target` is no longer watched: it is never due again (its heap entries go stale)."""
        self._due.pop(target, None)
        self._failures.pop(target, None)

    def _set(self, target: Hashable, due: int) -> None:
        if self._due.get(target) == due:
            return
        self._due[target] = due
        self._tiebreak += 1
        heapq.heappush(self._heap, (due, self._tiebreak, target))
        if len(self._heap) > 2 * len(self._due) + 1024:
            # Superseded entries pile up when targets are re-read by events; rebuild from the live ones.
            self._heap = [(at, i, t) for i, (t, at) in enumerate(self._due.items())]
            heapq.heapify(self._heap)

    def due_at(self, block: int) -> set[Hashable]:
        """Targets whose next re-read is at or before `block` (each returned once until recorded again)."""
        due = set()
        while self._heap and self._heap[0][0] <= block:
            at, _, target = heapq.heappop(self._heap)
            if self._due.get(target) == at:  # older entries for a target read again since are stale
                del self._due[target]
                due.add(target)
        return due
