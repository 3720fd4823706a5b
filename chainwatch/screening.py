"""Screening a price move in memory: which holders of a repriced asset need no read at this block.

Where a feed's answer IS the protocol's price of an asset, a holder's health at the new price is bounded from its
last read amounts (the protocol's `PriceBasis`). A holder whose bound stays above the highest warn line of the
chats watching it by `margin` cannot cross any line at this block and is not read; every other holder is. Pure: no
I/O, the engine feeds it logs' answers and reads' bases.

Which answers are the price is the protocol's word (`direct_prices`, from `feeds.Followed.direct`): for Aave, the
aggregator its oracle source is, or the aggregator behind the Chainlink proxies it is (Neverland, most markets;
a proxy forwards `latestAnswer()` untouched, checked at each resolve). Never a feed that transforms the answer
(a composite, an adapter, a multiplying or capped wrapper): its holders are all read, as are the holders of an
asset that such a feed also prices (`is_direct`), and every holder of a protocol whose resolve is still due.

A side of several assets (two collaterals) is bounded from the totals the hot read has: the protocol bounds the
move as if the whole side were in the asset that moved worst (see `AaveBasis`), which is sound for any split and
loose only for holders whose side is mostly in assets that did not move. Reading per-asset amounts would tighten
it at the cost of four more calls per reserve on every read, hot or not, which the read budget does not allow.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import NamedTuple

from chainwatch.feeds import PriceSource
from chainwatch.index import Target
from chainwatch.model import PositionKey
from chainwatch.protocols.base import AccountReading, PriceBasis


class Answer(NamedTuple):
    """A feed's newest answer heard, and where: a later (block, log index) supersedes it."""

    block: int
    log_index: int
    value: int


class Remembered(NamedTuple):
    key: PositionKey
    basis: PriceBasis


def may_skip(health: float | None, line: float | None, margin: float, age: int, interval: int) -> bool:
    """Whether a holder whose health is at least `health` need not be read: it clears `line` (the highest warn
    line watching it; None: unknown, or some chat is already alerted) by `margin`, and its amounts, `age` blocks
    old, are fresher than the refresh interval that health falls in."""
    if health is None or line is None:
        return False
    return health >= line * (1.0 + margin) and age < interval


class Screen:
    """The answers of direct feeds heard and each target's basis from its last read."""

    def __init__(self, margin: float) -> None:
        self.margin = margin
        self._direct: dict[str, dict[PriceSource, frozenset[str]]] = {}  # protocol -> source -> keys it prices
        self._moves: dict[str, dict[PriceSource, frozenset[str]]] = {}  # ... -> every key it moves, however
        self._answers: dict[PriceSource, Answer] = {}
        self._bases: dict[Target, Remembered] = {}

    def set_direct(
        self, protocol: str, direct: Mapping[PriceSource, frozenset[str]], moves: Mapping[PriceSource, frozenset[str]],
    ) -> None:  # fmt: skip
        """`direct`: sources whose answer is `protocol`'s price of those keys; `moves`: every key each source moves
        (`price_feeds()`), directly or through something else (a ratio feed over it)."""
        self._direct[protocol] = dict(direct)
        self._moves[protocol] = {source: moves.get(source, frozenset()) for source in direct}

    def is_direct(self, protocol: str, source: PriceSource, exposure: frozenset[str]) -> bool:
        """Whether `source`'s answer is the new price of everything it moves for a holder exposed to `exposure`:
        a holder of an asset priced by a ratio over this feed would be bounded at a price that is not the new one."""
        direct = self._direct.get(protocol, {}).get(source)
        return direct is not None and self._moves[protocol][source] & exposure <= direct

    def hear(self, source: PriceSource, block: int, log_index: int, value: int) -> None:
        """A direct feed's answer; logs may come out of order (backfill), the latest by position wins."""
        answer = Answer(block, log_index, value)
        known = self._answers.get(source)
        if known is None or (known.block, known.log_index) < (block, log_index):
            self._answers[source] = answer

    def forget_answers_above(self, block: int) -> None:
        """Blocks above `block` were replaced: their answers never were (a read pinned at or below it knows the
        ones that stand)."""
        self._answers = {source: a for source, a in self._answers.items() if a.block <= block}

    def remember(self, target: Target, outcome: AccountReading | None) -> None:
        """`target`'s newest read (None: it failed): its basis, when it has one and one reading to bound."""
        if outcome is not None and outcome.basis is not None and len(outcome.readings) == 1:
            self._bases[target] = Remembered(outcome.readings[0].key, outcome.basis)
        else:
            self._bases.pop(target, None)

    def forget(self, target: Target) -> None:
        self._bases.pop(target, None)

    def health_bound(self, target: Target) -> float | None:
        """A lower bound on `target`'s health at the newest answers heard; None when it cannot be told."""
        remembered = self._bases.get(target)
        if remembered is None:
            return None
        basis = remembered.basis
        prices: dict[str, int] = {}
        for source, keys in self._direct.get(target.protocol, {}).items():
            answer = self._answers.get(source)
            if answer is not None and answer.block > basis.block:  # a read at or after the log's block has it
                for key in keys:
                    prices[key] = answer.value
        return basis.health_at(prices)

    def skippable(
        self, candidates: Collection[Target], head: int, line_of: Callable[[PositionKey], float | None],
        interval_for: Callable[[float], int],
    ) -> set[Target]:  # fmt: skip
        """Of `candidates` (holders marked by direct answers alone), those that need no read at `head`."""
        skipped = set()
        for target in candidates:
            remembered = self._bases.get(target)
            if remembered is None:
                continue
            health = self.health_bound(target)
            age = head - remembered.basis.block
            interval = interval_for(health) if health is not None else 0
            if may_skip(health, line_of(remembered.key), self.margin, age, interval):
                skipped.add(target)
        return skipped
