"""What a position's per-asset lines imply: each collateral's liquidation price, and what brings health to a target.

Pure arithmetic on a detailed `Reading` (its `assets`), no I/O. Amounts anchor on the protocol's own figures:
weighted collateral CW = health_factor x debt and debt D = reading.debt, so a repay computed here brings the
protocol's health to the target, not only the lines' own sum; each line gives the price (value / amount) and
weight of its asset.
"""

from __future__ import annotations

import math

from chainwatch.model import AssetLine, Reading, Record, Side


class LiquidationPrice(Record, frozen=True, kw_only=True):
    """The price of one collateral at which health reaches 1.0, every other price unchanged.

    `price` is None when no fall of this asset alone liquidates (the rest of the collateral covers the debt);
    `drop` is the fraction of today's price it must lose (negative: already below the line).
    """

    symbol: str
    current_price: float
    price: float | None
    drop: float | None


class Repay(Record, frozen=True, kw_only=True):
    """Repay `amount` of `symbol` (worth `value`); `remaining` is the value still short when the whole line is not enough."""

    symbol: str
    amount: float
    value: float
    remaining: float = 0.0

    @property
    def reaches_target(self) -> bool:
        return self.remaining == 0.0


class AddCollateral(Record, frozen=True, kw_only=True):
    """Supply `amount` more of `symbol` (worth `value`) to reach the target instead of repaying."""

    symbol: str
    amount: float
    value: float


class RepayPlan(Record, frozen=True, kw_only=True):
    """How one position below `target` gets back to it: repay the largest debt, or add one of its collaterals."""

    target: float
    health_factor: float
    repay: Repay | None
    add_collateral: tuple[AddCollateral, ...]


def lines_health(lines: tuple[AssetLine, ...] | list[AssetLine]) -> float:
    """sum(collateral value x weight) / sum(debt value): the health the lines imply (inf without debt)."""
    debt = sum(line.value for line in lines if line.side is Side.DEBT)
    weighted = sum(line.value * line.weight for line in lines if line.side is Side.COLLATERAL)
    return math.inf if debt <= 0 else weighted / debt


def liquidation_prices(reading: Reading) -> list[LiquidationPrice]:
    """For each collateral line, the price at which health reaches 1.0; empty when there is no debt."""
    if not reading.has_debt or reading.debt <= 0:
        return []
    weighted_total = reading.health_factor * reading.debt
    found = []
    for line in _collaterals(reading):
        p0 = line.price
        # The same asset borrowed moves with its price too: its debt value scales like its collateral value.
        owed = sum(d.amount for d in _debts(reading) if d.symbol == line.symbol)
        others_weighted = weighted_total - line.value * line.weight
        others_debt = reading.debt - owed * p0
        # Health 1.0: others_weighted + amount*weight*p == others_debt + owed*p.
        slope = line.amount * line.weight - owed
        if slope <= 0 or p0 <= 0 or others_debt - others_weighted <= 0:
            # A fall never hurts (net borrowed, weightless, unpriced), or the others cover the debt at any price.
            found.append(LiquidationPrice(symbol=line.symbol, current_price=p0, price=None, drop=None))
            continue
        price = (others_debt - others_weighted) / slope
        found.append(LiquidationPrice(symbol=line.symbol, current_price=p0, price=price, drop=1 - price / p0))
    return found


def repay_to(reading: Reading, target: float) -> RepayPlan | None:
    """What brings health up to `target`; None when it is already there (or the position has no debt)."""
    if target <= 0:
        raise ValueError(f"target health {target} must be positive")
    if not reading.has_debt or reading.debt <= 0 or reading.health_factor >= target:
        return None
    debt, weighted = reading.debt, reading.health_factor * reading.debt
    # Health CW / (D - r) = T gives the debt value to repay; CW / T is the debt the collateral carries at T.
    needed = debt - weighted / target
    repay = None
    debts = [line for line in _debts(reading) if line.value > 0]
    if debts:
        largest = max(debts, key=lambda line: line.value)
        if largest.value >= needed:
            repay = Repay(symbol=largest.symbol, amount=needed / largest.price, value=needed)
        else:
            repay = Repay(symbol=largest.symbol, amount=largest.amount, value=largest.value,
                          remaining=needed - largest.value)  # fmt: skip
    # Adding collateral instead: T x D = CW + added value x weight.
    short = target * debt - weighted
    adds = tuple(
        AddCollateral(symbol=line.symbol, amount=short / (line.weight * line.price), value=short / line.weight)
        for line in _collaterals(reading)
        if line.weight > 0
    )
    return RepayPlan(target=target, health_factor=reading.health_factor, repay=repay, add_collateral=adds)


def _collaterals(reading: Reading) -> list[AssetLine]:
    return [line for line in reading.assets if line.side is Side.COLLATERAL and line.amount > 0]


def _debts(reading: Reading) -> list[AssetLine]:
    return [line for line in reading.assets if line.side is Side.DEBT and line.amount > 0]
