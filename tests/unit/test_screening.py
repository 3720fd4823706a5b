"""Screening a price move in memory: it never skips a holder whose health, as Aave computes it, crosses a line.

The reference below is Aave v3's `GenericLogic.calculateUserAccountData` (core-v3 1.19, the artifacts the devnet
deploys) in integers: per reserve `floor(balance x price / unit)`, `avgLT = floor(sum(value x LT) / collateral)`,
`HF = wadDiv(percentMul(collateral, avgLT), debt)`, both rounding half up; a reserve with LT 0 counts no collateral.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address

from chainwatch.feeds import PriceSource
from chainwatch.index import Target
from chainwatch.model import PositionKey
from chainwatch.multicall import CallResult
from chainwatch import screening
from chainwatch.protocols import aave_v3
from chainwatch.protocols.aave_v3 import AaveBasis, AaveV3
from chainwatch.protocols.base import AccountReading
from chainwatch.screening import Screen, may_skip

WAD = 10**18
MAX = 2**256 - 1
PROTOCOL = "neverland"
USER = to_checksum_address("0x" + "d1" * 20)


@dataclass
class Reserve:
    asset: str
    decimals: int
    threshold: int  # bps
    supplied: int  # token units, as the aToken's balanceOf (index applied)
    owed: int
    collateral: bool  # the user's collateral flag
    borrowing: bool


def account_data(reserves: list[Reserve], prices: dict[str, int]) -> tuple[int, int, int, int]:
    """(totalCollateralBase, totalDebtBase, avgLiquidationThreshold, healthFactor) as GenericLogic computes them."""
    collateral = debt = weighted = 0
    for r in reserves:
        unit = 10**r.decimals
        if r.threshold and r.collateral:
            value = r.supplied * prices[r.asset] // unit
            collateral += value
            weighted += value * r.threshold
        if r.borrowing:
            debt += r.owed * prices[r.asset] // unit
    threshold = weighted // collateral if collateral else 0
    if debt == 0:
        return collateral, debt, threshold, MAX
    return collateral, debt, threshold, ((collateral * threshold + 5_000) // 10_000 * WAD + debt // 2) // debt


def health(reserves: list[Reserve], prices: dict[str, int]) -> float:
    raw = account_data(reserves, prices)[3]
    return math.inf if raw == MAX else raw / 1e18


def protocol_for(reserves: list[Reserve]) -> AaveV3:
    aave = AaveV3(PROTOCOL, to_checksum_address("0x" + "99" * 20))
    aave.pool, aave.oracle = to_checksum_address("0x" + "aa" * 20), to_checksum_address("0x" + "bb" * 20)
    aave.reserves = {r.asset: i for i, r in enumerate(reserves)}
    aave.oracle_prices_only = True
    return aave


def read(aave: AaveV3, reserves: list[Reserve], prices: dict[str, int], block: int) -> AccountReading:
    """The protocol's own decoding of the hot-path results the Pool and oracle would return at `prices`."""
    collateral, debt, threshold, hf = account_data(reserves, prices)
    bitmap = sum((r.borrowing << (2 * i)) | (r.collateral << (2 * i + 1)) for i, r in enumerate(reserves))
    results = [
        CallResult(success=True, data=encode(["uint256"] * 6, [collateral, debt, 0, threshold, 0, hf])),
        CallResult(success=True, data=encode(["uint256"], [bitmap])),
        CallResult(success=True, data=encode(["uint256[]"], [[prices[r.asset] for r in reserves]])),
    ]
    return aave.plan(USER).decode(results, block)


def random_portfolio(rng: random.Random) -> list[Reserve]:
    reserves = []
    for i in range(rng.randint(1, 5)):
        decimals = rng.choice([0, 2, 6, 8, 18, 24, rng.randint(0, 27)])
        unit = 10**decimals
        collateral, borrowing = rng.random() < 0.6, rng.random() < 0.5
        supplied = rng.choice([0, 1, rng.randint(1, unit * 1000), rng.randint(1, unit * 10**6)]) if collateral else 0
        owed = rng.choice([1, rng.randint(1, unit * 1000), rng.randint(1, unit * 10**5)]) if borrowing else 0
        reserves.append(Reserve(asset=f"0x{i + 1:040x}", decimals=decimals, threshold=rng.choice([0, rng.randint(1, 9_500)]),
                                supplied=supplied, owed=owed, collateral=collateral, borrowing=borrowing))  # fmt: skip
    if not any(r.collateral for r in reserves):
        reserves[0].collateral, reserves[0].supplied = True, rng.randint(1, 10 ** (reserves[0].decimals + 4))
    return reserves


def random_warn_lines(rng: random.Random) -> list[float]:
    """Per-chat warn lines of the chats watching the position (each chat's critical is below its warn)."""
    return [rng.uniform(1.01, 3.0) for _ in range(rng.randint(1, 3))]


class Stats(NamedTuple):
    steps: int
    skipped: int
    skipped_several: int  # skips of a holder with several collaterals or several debts, one of them moved
    closest: float  # exact health over the skip line, lowest among skipped holders


def check_never_skips_a_crossing(seed: int, portfolios: int) -> Stats:
    """Random portfolios (one to five reserves: several collaterals and debts, thresholds, decimals) through
    random price paths: a skipped holder's exact health is above every chat's warn line by the margin (so no
    warn, critical or liquidatable alert is missed), and the bound never exceeds the exact health."""
    rng = random.Random(seed)
    steps = skipped = skipped_several = 0
    closest = 2.0
    for _ in range(portfolios):
        reserves = random_portfolio(rng)
        aave = protocol_for(reserves)
        lines = random_warn_lines(rng)
        margin = rng.choice([0.0, 0.005, 0.02, 0.1])
        screen = Screen(margin)
        sources = {r.asset: PriceSource(emitter=f"0x{int(r.asset, 16) + 0x1000:040x}") for r in reserves}
        direct = {sources[r.asset]: frozenset({r.asset}) for r in reserves}
        screen.set_direct(PROTOCOL, direct, direct)
        target = Target(protocol=PROTOCOL, account=USER)
        prices = {r.asset: rng.randint(1, 10**12) for r in reserves}
        screen.remember(target, read(aave, reserves, prices, block=0))
        read_prices = dict(prices)
        alerting = health(reserves, prices) < max(lines)
        for block in range(1, 12):
            steps += 1
            for r in rng.sample(reserves, rng.randint(1, len(reserves))):
                move = rng.choice([rng.uniform(0.97, 1.03), rng.uniform(0.5, 1.6), 1.0 + 1e-9, 0.999999])
                prices[r.asset] = max(1, int(prices[r.asset] * move))
                screen.hear(sources[r.asset], block, 0, prices[r.asset])
            exact = health(reserves, prices)
            bound = screen.health_bound(target)
            assert bound is None or bound <= exact, (reserves, prices, bound, exact)
            if rng.random() < 0.5 and 1.1 < exact < 1e6:
                # A chat's line (they change between blocks) set right at the margin of the health to be: a
                # bound a hair too high would skip a holder that is in fact just inside the margin.
                lines = [*lines[:3], exact * rng.uniform(0.999, 1.001) / (1 + margin)]
            line = None if alerting else max(lines)
            if screen.skippable({target}, block, lambda key: line, lambda hf: 1_000):
                skipped += 1
                assert exact >= max(lines) * (1 + margin), (reserves, prices, exact, lines)
                closest = min(closest, exact / (max(lines) * (1 + margin)))
                moved = {r.asset for r in reserves if prices[r.asset] != read_prices[r.asset]}
                sides = ([r.asset for r in reserves if r.collateral], [r.asset for r in reserves if r.borrowing])
                skipped_several += any(len(side) > 1 and moved & set(side) for side in sides)
            else:
                screen.remember(target, read(aave, reserves, prices, block))
                read_prices = dict(prices)
                alerting = exact < max(lines)
    return Stats(steps, skipped, skipped_several, closest)


class TestNeverSkipsACrossing:
    def test_random_portfolios_and_price_paths(self) -> None:
        stats = check_never_skips_a_crossing(20261203, 1500)
        assert stats.skipped > stats.steps // 10  # screening does save reads: the property is not vacuous
        assert stats.skipped_several > stats.skipped // 10  # multi-asset sides are screened, not just left alone
        assert stats.closest < 1.0001  # and some skipped holders were right at the margin

    @pytest.mark.parametrize("mutant", ["margin ignored", "several collaterals scaled by the mean move",
                                        "several debts not scaled up"])  # fmt: skip
    def test_the_property_catches_a_broken_screen(self, mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each plausible mistake, put in the screen, makes the property above fail: it would catch it."""
        if mutant == "margin ignored":
            monkeypatch.setattr(screening, "may_skip", lambda health, line, margin, age, interval: (
                health is not None and line is not None and health >= line and age < interval))  # fmt: skip
        elif mutant == "several collaterals scaled by the mean move":
            def mean(collateral: int, threshold: int, moves: list[tuple[int, int]]) -> int:
                ratio = sum(new / old for new, old in moves) / len(moves)
                return int(collateral * threshold * ratio) // 10_000
            monkeypatch.setattr(aave_v3, "_weighted_bound", mean)
        else:
            monkeypatch.setattr(aave_v3, "_debt_bound", lambda debt, moves: debt)
        with pytest.raises(AssertionError):
            check_never_skips_a_crossing(20261203, 1500)

    def test_bound_is_exact_when_both_sides_are_single(self) -> None:
        """One collateral moved, one debt: the bound is Aave's health itself or just below (dust rounding)."""
        weth, usdc = Reserve("0x" + "01" * 20, 18, 8_500, 10**18, 0, True, False), Reserve("0x" + "02" * 20, 6, 0, 0, 1_000 * 10**6, False, True)
        aave = protocol_for([weth, usdc])
        basis = read(aave, [weth, usdc], {weth.asset: 2_000 * 10**8, usdc.asset: 10**8}, block=1).basis
        assert isinstance(basis, AaveBasis)
        exact = health([weth, usdc], {weth.asset: 1_700 * 10**8, usdc.asset: 10**8})
        assert basis.health_at({weth.asset: 1_700 * 10**8}) == pytest.approx(exact, abs=1e-12) == 1.445


class TestWhatIsNeverScreened:
    def setup_method(self) -> None:
        self.weth, self.wbtc = Reserve("0x" + "01" * 20, 18, 8_500, 10**18, 0, True, False), Reserve("0x" + "03" * 20, 8, 7_500, 10**7, 0, True, False)
        self.usdc = Reserve("0x" + "02" * 20, 6, 0, 0, 1_000 * 10**6, False, True)
        self.prices = {self.weth.asset: 2_000 * 10**8, self.wbtc.asset: 60_000 * 10**8, self.usdc.asset: 10**8}

    def test_a_moved_asset_on_a_side_of_several_is_bounded_as_if_it_were_all_of_it(self) -> None:
        """WETH ($2,000 x 0.85) and WBTC ($6,000 x 0.75) against 1,000 USDC, WETH halves: Aave says 5.349; the
        totals alone cannot say which asset fell, so the bound is every dollar of collateral halved (3.10, less
        0.0008 for the rounding of Aave's averaged threshold: C' x floor(W' / C') > W' - C'), still far above a 1.5 line. A debt side of one scales exactly as before."""
        reserves = [self.weth, self.wbtc, self.usdc]
        basis = read(protocol_for(reserves), reserves, self.prices, block=1).basis
        assert basis is not None
        bound = basis.health_at({self.weth.asset: 1_000 * 10**8})
        exact = health(reserves, {**self.prices, self.weth.asset: 1_000 * 10**8})
        assert bound is not None and 3.099 <= bound <= 3.1 < exact == pytest.approx(5.35, abs=1e-3)
        assert basis.health_at({self.usdc.asset: 101_000_000}) == pytest.approx(
            health(reserves, {**self.prices, self.usdc.asset: 101_000_000}), rel=1e-9)

    def test_a_non_positive_answer(self) -> None:
        """Aave's oracle falls back to another source for an answer <= 0: the holder is read."""
        reserves = [self.weth, self.usdc]
        basis = read(protocol_for(reserves), reserves, self.prices, block=1).basis
        assert basis is not None and basis.health_at({self.weth.asset: 0}) is None

    def test_a_market_whose_emode_has_its_own_oracle(self) -> None:
        """When some e-mode category prices with its own oracle, the read carries no basis at all."""
        reserves = [self.weth, self.usdc]
        aave = protocol_for(reserves)
        aave.oracle_prices_only = False
        assert read(aave, reserves, self.prices, block=1).basis is None
        assert aave.direct_prices() == {}

    def test_unknown_line_alerting_or_stale(self) -> None:
        """No line (no chat, or one already alerted), a health below the margin, or amounts older than the
        refresh interval: read."""
        assert not may_skip(3.0, None, 0.02, age=1, interval=100)
        assert not may_skip(None, 1.5, 0.02, age=1, interval=100)
        assert not may_skip(1.5 * 1.02 - 1e-9, 1.5, 0.02, age=1, interval=100)
        assert not may_skip(3.0, 1.5, 0.02, age=100, interval=100)
        assert may_skip(1.5 * 1.02, 1.5, 0.02, age=99, interval=100)


class TestScreen:
    def test_latest_answer_by_position_wins_and_reorg_forgets(self) -> None:
        """Answers heard out of order: the one latest in the chain is the price; replaced blocks' are forgotten."""
        weth, usdc = Reserve("0x" + "01" * 20, 18, 8_500, 10**18, 0, True, False), Reserve("0x" + "02" * 20, 6, 0, 0, 1_000 * 10**6, False, True)
        aave, target = protocol_for([weth, usdc]), Target(protocol=PROTOCOL, account=USER)
        screen, source = Screen(0.02), PriceSource(emitter="0x" + "f1" * 20)
        screen.set_direct(PROTOCOL, {source: frozenset({weth.asset})}, {source: frozenset({weth.asset})})
        screen.remember(target, read(aave, [weth, usdc], {weth.asset: 2_000 * 10**8, usdc.asset: 10**8}, block=10))
        screen.hear(source, 12, 3, 1_000 * 10**8)
        screen.hear(source, 12, 1, 3_000 * 10**8)  # earlier in the same block, heard later
        screen.hear(source, 9, 0, 100 * 10**8)  # before the read: already in it
        assert screen.health_bound(target) == pytest.approx(0.85, abs=1e-9)
        screen.forget_answers_above(11)
        assert screen.health_bound(target) == pytest.approx(1.7, abs=1e-9)

    def test_a_source_that_also_moves_a_composite_is_direct_only_for_holders_without_it(self) -> None:
        """WETH's aggregator is WETH's price, and half of a ratio feed's (sWETH): it is screened for a WETH holder,
        never for one of sWETH (its new price is not the answer), nor on a protocol that did not call it direct."""
        screen, weth_feed = Screen(0.02), PriceSource(emitter="0x" + "f1" * 20)
        weth, sweth, usdc = "0x" + "01" * 20, "0x" + "04" * 20, "0x" + "02" * 20
        screen.set_direct(PROTOCOL, {weth_feed: frozenset({weth})}, {weth_feed: frozenset({weth, sweth})})
        assert screen.is_direct(PROTOCOL, weth_feed, frozenset({weth, usdc}))
        assert not screen.is_direct(PROTOCOL, weth_feed, frozenset({sweth, usdc}))
        assert not screen.is_direct(PROTOCOL, weth_feed, frozenset({weth, sweth}))
        assert not screen.is_direct("morpho", weth_feed, frozenset({weth}))

    def test_a_failed_read_forgets_the_basis(self) -> None:
        """After a read that failed (or left parts unread) nothing is screened for that target."""
        screen, target = Screen(0.02), Target(protocol=PROTOCOL, account=USER)
        weth, usdc = Reserve("0x" + "01" * 20, 18, 8_500, 10**18, 0, True, False), Reserve("0x" + "02" * 20, 6, 0, 0, 1_000 * 10**6, False, True)
        screen.remember(target, read(protocol_for([weth, usdc]), [weth, usdc], {weth.asset: 2_000 * 10**8, usdc.asset: 10**8}, 1))
        screen.remember(target, None)
        assert screen.skippable({target}, 2, lambda key: 1.0, lambda hf: 100) == set()

    def test_line_is_asked_for_the_reading_key(self) -> None:
        """The tracker is asked about the position the basis belongs to."""
        screen, target = Screen(0.0), Target(protocol=PROTOCOL, account=USER)
        weth, usdc = Reserve("0x" + "01" * 20, 18, 8_500, 10**18, 0, True, False), Reserve("0x" + "02" * 20, 6, 0, 0, 1_000 * 10**6, False, True)
        screen.remember(target, read(protocol_for([weth, usdc]), [weth, usdc], {weth.asset: 2_000 * 10**8, usdc.asset: 10**8}, 1))
        asked: list[PositionKey] = []
        assert screen.skippable({target}, 2, lambda key: asked.append(key) or 1.5, lambda hf: 100) == {target}
        assert asked == [PositionKey(protocol=PROTOCOL, account=USER)]
