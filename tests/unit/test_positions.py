"""Liquidation prices and repay amounts from a reading's per-asset lines: pure arithmetic, checked by applying it."""

from __future__ import annotations

import math

import msgspec
import pytest

from chainwatch.model import AssetLine, PositionKey, Reading, Side
from chainwatch.positions import lines_health, liquidation_prices, repay_to

KEY = PositionKey(protocol="p", account="0xA")


def collateral(symbol: str, amount: float, price: float, weight: float) -> AssetLine:
    return AssetLine(symbol=symbol, side=Side.COLLATERAL, amount=amount, value=amount * price, weight=weight)


def debt(symbol: str, amount: float, price: float) -> AssetLine:
    return AssetLine(symbol=symbol, side=Side.DEBT, amount=amount, value=amount * price)


def reading(*lines: AssetLine) -> Reading:
    """A reading whose protocol totals are exactly what its lines imply, as a consistent protocol reports them."""
    total_debt = sum(line.value for line in lines if line.side is Side.DEBT)
    return Reading(key=KEY, block=1, health_factor=lines_health(lines), debt=total_debt,
                   collateral=sum(line.value for line in lines if line.side is Side.COLLATERAL), assets=lines)  # fmt: skip


def repriced(lines: tuple[AssetLine, ...], symbol: str, price: float) -> list[AssetLine]:
    """The lines with `symbol` (on either side) valued at `price`."""
    return [msgspec.structs.replace(line, value=line.amount * price) if line.symbol == symbol else line for line in lines]


POSITIONS = {
    "one collateral": reading(collateral("WETH", 1, 2000, 0.85), debt("USDC", 1500, 1)),
    "two collaterals": reading(collateral("WETH", 1, 2000, 0.8), collateral("WBTC", 0.01, 60_000, 0.75),
                               debt("USDC", 1800, 1)),  # fmt: skip
    "two debts": reading(collateral("WETH", 2, 2000, 0.85), debt("USDC", 1500, 1), debt("WBTC", 0.02, 60_000)),
    "collateral also borrowed": reading(collateral("WETH", 2, 2000, 0.85), debt("WETH", 0.5, 2000),
                                        debt("USDC", 1500, 1)),  # fmt: skip
}


class TestLiquidationPrices:
    @pytest.mark.parametrize("name", POSITIONS)
    def test_each_price_brings_the_lines_to_one(self, name: str) -> None:
        """Each collateral at its liquidation price, all else unchanged, gives health 1.0 by the lines."""
        position = POSITIONS[name]
        found = liquidation_prices(position)
        assert [p.symbol for p in found] == [line.symbol for line in position.assets if line.side is Side.COLLATERAL]
        for price in found:
            assert price.price is not None
            assert lines_health(repriced(position.assets, price.symbol, price.price)) == pytest.approx(1.0)
            assert price.drop == pytest.approx(1 - price.price / price.current_price)

    def test_one_collateral_is_price_over_health(self) -> None:
        """With one collateral the line sits at today's price divided by health, a drop of 1 - 1/HF."""
        (price,) = liquidation_prices(POSITIONS["one collateral"])
        assert price.price == pytest.approx(2000 / (1700 / 1500))
        assert price.drop == pytest.approx(1 - 1500 / 1700)

    def test_no_debt_has_no_liquidation_price(self) -> None:
        """Without debt nothing liquidates: no prices at all."""
        assert liquidation_prices(reading(collateral("WETH", 1, 2000, 0.85))) == []

    def test_other_collateral_covering_the_debt_gives_none(self) -> None:
        """WETH alone carries the debt, so no WBTC price liquidates (None, not a zero price); WETH's still can."""
        position = reading(collateral("WETH", 1, 2000, 0.8), collateral("WBTC", 0.01, 60_000, 0.75),
                           debt("USDC", 1200, 1))  # fmt: skip
        weth, wbtc = liquidation_prices(position)
        assert (wbtc.price, wbtc.drop) == (None, None)
        assert weth.price == pytest.approx((1200 - 450) / 0.8)

    def test_asset_borrowed_more_than_it_counts_never_liquidates_by_falling(self) -> None:
        """A collateral whose own debt outweighs its weighted amount gains health as it falls: no price."""
        position = reading(collateral("WETH", 1, 2000, 0.5), debt("WETH", 0.6, 2000), debt("USDC", 100, 1))
        (price,) = liquidation_prices(position)
        assert price.price is None

    def test_already_liquidatable_has_a_negative_drop(self) -> None:
        """Below 1.0 the liquidation price is above today's: the drop is negative."""
        (price,) = liquidation_prices(reading(collateral("WETH", 1, 1700, 0.85), debt("USDC", 1500, 1)))
        assert price.price == pytest.approx(1500 / 0.85) and price.drop is not None and price.drop < 0


class TestRepayTo:
    @pytest.mark.parametrize("name", POSITIONS)
    @pytest.mark.parametrize("target", [1.2, 1.5, 1.8, 3.0])
    def test_repay_reaches_the_target(self, name: str, target: float) -> None:
        """Repaying the computed amount of the largest debt line gives the target health by the lines."""
        position = POSITIONS[name]
        plan = repay_to(position, target)
        if position.health_factor >= target:
            assert plan is None
            return
        assert plan is not None and plan.repay is not None
        largest = max((line for line in position.assets if line.side is Side.DEBT), key=lambda line: line.value)
        assert plan.repay.symbol == largest.symbol
        after = [
            msgspec.structs.replace(line, amount=line.amount - plan.repay.amount, value=line.value - plan.repay.value)
            if line is largest else line
            for line in position.assets
        ]
        if plan.repay.reaches_target:
            assert lines_health(after) == pytest.approx(target)
            assert plan.repay.value == pytest.approx(plan.repay.amount * largest.price)
        else:  # the whole line is repaid and the rest is still short
            assert plan.repay.amount == largest.amount and plan.repay.remaining > 0
            assert lines_health(after) < target

    @pytest.mark.parametrize("name", POSITIONS)
    def test_each_collateral_alternative_reaches_the_target(self, name: str) -> None:
        """Adding the computed amount of any one collateral instead gives the target health by the lines."""
        position, target = POSITIONS[name], 4.0
        plan = repay_to(position, target)
        assert plan is not None
        assert len(plan.add_collateral) == sum(1 for line in position.assets if line.side is Side.COLLATERAL)
        for add in plan.add_collateral:
            after = [
                msgspec.structs.replace(line, amount=line.amount + add.amount, value=line.value * (1 + add.amount / line.amount))
                if line.side is Side.COLLATERAL and line.symbol == add.symbol else line
                for line in position.assets
            ]
            assert lines_health(after) == pytest.approx(target)

    def test_one_collateral_numbers(self) -> None:
        """1 WETH at $2000 (LT 0.85) against 1500 USDC, to 1.8: repay 1500 - 1700/1.8 = 555.56 USDC, or add 0.588 WETH."""
        plan = repay_to(POSITIONS["one collateral"], 1.8)
        assert plan is not None and plan.repay is not None
        assert (plan.repay.symbol, plan.repay.amount) == ("USDC", pytest.approx(1500 - 1700 / 1.8))
        (add,) = plan.add_collateral
        assert (add.symbol, add.amount) == ("WETH", pytest.approx((1.8 * 1500 - 1700) / (0.85 * 2000)))

    def test_largest_line_too_small_says_what_remains(self) -> None:
        """When the largest debt alone cannot reach the target, the whole line is proposed with what remains."""
        position = reading(collateral("WETH", 1, 2000, 0.85), debt("USDC", 800, 1), debt("DAI", 700, 1))
        plan = repay_to(position, 20.0)
        assert plan is not None and plan.repay is not None
        needed = 1500 - 1700 / 20
        assert (plan.repay.symbol, plan.repay.amount) == ("USDC", 800)
        assert plan.repay.remaining == pytest.approx(needed - 800) and not plan.repay.reaches_target

    def test_uses_the_protocols_own_health(self) -> None:
        """The repay follows the reported health and debt, even where the lines' own sum drifts a little."""
        position = msgspec.structs.replace(POSITIONS["one collateral"], health_factor=1.1)
        plan = repay_to(position, 1.5)
        assert plan is not None and plan.repay is not None
        assert plan.repay.value == pytest.approx(1500 - 1.1 * 1500 / 1.5)

    @pytest.mark.parametrize("health", [1.8, 2.5, math.inf])
    def test_nothing_to_do_at_or_above_target(self, health: float) -> None:
        """At or above the target (or without debt) there is no plan."""
        assert repay_to(msgspec.structs.replace(POSITIONS["one collateral"], health_factor=health), 1.8) is None

    def test_target_must_be_positive(self) -> None:
        """A zero target is a caller's mistake, not a plan."""
        with pytest.raises(ValueError):
            repay_to(POSITIONS["one collateral"], 0)
