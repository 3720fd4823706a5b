"""/position and /repay arithmetic against each protocol's own health on Anvil: detailed reads, repay on chain, reprice.

Each test opens a position below the target, reads it with per-asset lines, repays what `repay_to` says (a real
transaction of the debt asset) and reads the protocol's own health again; and sets the collateral's feed to the
computed liquidation price, where health must then be 1.0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal

import pytest

from chainwatch.config import CurvanceConfig, EulerV2Config, MorphoBlueConfig
from chainwatch.devnet.curvance import CurvanceActions
from chainwatch.devnet.euler import EulerActions
from chainwatch.devnet.morpho import MorphoActions
from chainwatch.index import Target
from chainwatch.model import Reading, Side
from chainwatch.positions import lines_health, liquidation_prices, repay_to
from chainwatch.protocols.aave_v3 import AaveV3
from chainwatch.protocols.base import LendingProtocol
from chainwatch.protocols.curvance import Curvance
from chainwatch.protocols.euler_v2 import EulerV2
from chainwatch.protocols.morpho_blue import MorphoBlue
from chainwatch.reader import Reader
from chainwatch.recompute import read_targets
from chainwatch.rpc import Rpc
from tests.fork.conftest import Chain

TARGET = 1.8
TOLERANCE = 0.005  # relative: 0.5%
USDC_DECIMALS = 6


@dataclass
class Case:
    """One protocol on the devnet: how to build its module, open the standard position, and repay USDC."""

    protocol: Callable[[Chain], LendingProtocol]
    open_position: Callable[[Chain, str], Awaitable[int]]
    repay: Callable[[Chain, str, Decimal], Awaitable[int]]


async def _aave_open(chain: Chain, account: str) -> int:
    return await chain.actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1500})  # health 1.133


async def _aave_repay(chain: Chain, account: str, amount: Decimal) -> int:
    return await chain.actions.repay(account, "USDC", amount)


def _morpho(chain: Chain) -> MorphoActions:
    assert chain.devnet.morpho_blue is not None
    return MorphoActions(chain.node.http_url, chain.devnet.morpho_blue)


async def _morpho_open(chain: Chain, account: str) -> int:
    async with _morpho(chain) as morpho:
        return await morpho.open_position(account, "WETH/USDC", collateral=1, borrow=1500)  # health 1.147


async def _morpho_repay(chain: Chain, account: str, amount: Decimal) -> int:
    async with _morpho(chain) as morpho:
        return await morpho.repay(account, "WETH/USDC", amount)


def _euler(chain: Chain) -> EulerActions:
    assert chain.devnet.euler_v2 is not None
    return EulerActions(chain.node.http_url, chain.devnet, chain.devnet.euler_v2)


async def _euler_open(chain: Chain, account: str) -> int:
    euler = _euler(chain)
    try:
        return await euler.open_position(account, collateral={"WETH": 1}, borrow=1400)  # health 1.214
    finally:
        await euler.aclose()


async def _euler_repay(chain: Chain, account: str, amount: Decimal) -> int:
    euler = _euler(chain)
    try:
        return await euler.repay(account, amount)
    finally:
        await euler.aclose()


def _curvance(chain: Chain) -> CurvanceActions:
    assert chain.devnet.curvance is not None
    return CurvanceActions(chain.node.http_url, chain.devnet.curvance)


async def _curvance_open(chain: Chain, account: str) -> int:
    async with _curvance(chain) as curvance:
        return await curvance.open_position(account, collateral={"WETH": 1}, borrow={"USDC": 1400})  # 1,600 / 1,400 = 1.143


async def _curvance_repay(chain: Chain, account: str, amount: Decimal) -> int:
    async with _curvance(chain) as curvance:
        return await curvance.repay(account, "USDC", amount)


def _morpho_protocol(chain: Chain) -> LendingProtocol:
    assert chain.devnet.morpho_blue is not None
    devnet = chain.devnet.morpho_blue
    return MorphoBlue(MorphoBlueConfig(name="morpho", morpho=devnet.morpho, markets=(devnet.markets["WETH/USDC"].id,)))


def _euler_protocol(chain: Chain) -> LendingProtocol:
    assert chain.devnet.euler_v2 is not None
    return EulerV2(EulerV2Config(name="euler", evc=chain.devnet.euler_v2.evc, vaults=(chain.devnet.euler_v2.borrow_vault,)))


def _curvance_protocol(chain: Chain) -> LendingProtocol:
    assert chain.devnet.curvance is not None
    return Curvance(CurvanceConfig(name="curvance", market_managers=(chain.devnet.curvance.market_manager,)))


CASES = {
    "aave_v3": Case(protocol=lambda chain: AaveV3("neverland", chain.devnet.aave_v3.pool_addresses_provider),
                    open_position=_aave_open, repay=_aave_repay),  # fmt: skip
    "morpho_blue": Case(protocol=_morpho_protocol, open_position=_morpho_open, repay=_morpho_repay),
    "euler_v2": Case(protocol=_euler_protocol, open_position=_euler_open, repay=_euler_repay),
    "curvance": Case(protocol=_curvance_protocol, open_position=_curvance_open, repay=_curvance_repay),
}


@pytest.fixture(params=list(CASES))
async def case(request: pytest.FixtureRequest, chain: Chain) -> AsyncIterator[Case]:
    yield CASES[request.param]


async def detailed_reading(chain: Chain, case: Case, account: str) -> Reading:
    """A fresh module's detailed reading of `account` at the latest block (resolved and discovered there)."""
    rpc = Rpc([chain.node.http_url])
    try:
        block = await rpc.block_number()
        reader = Reader(rpc, chain.devnet.multicall3)
        protocol = case.protocol(chain)
        await protocol.resolve(reader, block)
        await protocol.discover(rpc, reader, [account], block)
        target = Target(protocol=protocol.name, account=account)
        ((_, outcome),) = await read_targets({protocol.name: protocol}, reader, [target], block, detailed=True)
    finally:
        await rpc.close()
    assert not isinstance(outcome, Exception), outcome
    (reading,) = [r for r in outcome.readings if r.has_debt]
    return reading


def usdc(amount: float) -> Decimal:
    # Rounded up to USDC's 6 decimals: a wei short would leave health a hair below the target.
    return Decimal(str(amount)).quantize(Decimal(10) ** -USDC_DECIMALS, rounding=ROUND_UP)


async def test_lines_imply_the_reported_health(chain: Chain, case: Case) -> None:
    """The per-asset lines (amounts, values, weights read on chain) give the protocol's own health within 0.5%."""
    account = chain.accounts[0]
    await case.open_position(chain, account)
    reading = await detailed_reading(chain, case, account)
    assert {(line.symbol, line.side) for line in reading.assets} == {("WETH", Side.COLLATERAL), ("USDC", Side.DEBT)}
    (weth,) = [line for line in reading.assets if line.side is Side.COLLATERAL]
    assert weth.amount == pytest.approx(1.0) and weth.price == pytest.approx(2000, rel=1e-6)
    assert 0.7 < weth.weight < 0.9
    assert lines_health(reading.assets) == pytest.approx(reading.health_factor, rel=TOLERANCE)


async def test_repaying_the_computed_amount_reaches_the_target(chain: Chain, case: Case) -> None:
    """Repaying `repay_to`'s amount of USDC on chain brings the protocol's own health to the target within 0.5%."""
    account = chain.accounts[1]
    await case.open_position(chain, account)
    before = await detailed_reading(chain, case, account)
    assert before.health_factor < TARGET
    plan = repay_to(before, TARGET)
    assert plan is not None and plan.repay is not None and plan.repay.reaches_target
    assert plan.repay.symbol == "USDC"
    await case.repay(chain, account, usdc(plan.repay.amount))
    after = await detailed_reading(chain, case, account)
    assert after.health_factor == pytest.approx(TARGET, rel=TOLERANCE)


async def test_collateral_at_its_liquidation_price_gives_health_one(chain: Chain, case: Case) -> None:
    """Setting WETH's feed to the computed liquidation price brings the protocol's own health to 1.0 within 0.5%."""
    account = chain.accounts[2]
    await case.open_position(chain, account)
    (weth,) = liquidation_prices(await detailed_reading(chain, case, account))
    assert weth.symbol == "WETH" and weth.price is not None and weth.drop is not None
    assert 0 < weth.drop < 1
    # Every devnet protocol prices USDC at $1, so WETH's USD feed is its price in each reading's currency.
    await chain.actions.set_price("WETH", Decimal(str(round(weth.price, 8))))
    assert (await detailed_reading(chain, case, account)).health_factor == pytest.approx(1.0, rel=TOLERANCE)


async def test_aave_two_collaterals_one_price_moves(chain: Chain) -> None:
    """With WETH and WBTC posted, WETH at its computed price (WBTC unchanged) gives Aave's health 1.0; the lines
    show both collaterals with their own thresholds."""
    case, account = CASES["aave_v3"], chain.accounts[3]
    await chain.actions.open_position(account, supply={"WETH": 1, "WBTC": Decimal("0.01")}, borrow={"USDC": 1800})
    reading = await detailed_reading(chain, case, account)
    assert sorted(line.symbol for line in reading.assets if line.side is Side.COLLATERAL) == ["WBTC", "WETH"]
    assert lines_health(reading.assets) == pytest.approx(reading.health_factor, rel=TOLERANCE)
    prices = {price.symbol: price for price in liquidation_prices(reading)}
    weth = prices["WETH"]
    # WBTC still carries part of the debt, so WETH must fall further than price / HF, the one-collateral line.
    assert weth.price is not None and weth.price < weth.current_price / reading.health_factor
    await chain.actions.set_price("WETH", Decimal(str(round(weth.price, 8))))
    assert (await detailed_reading(chain, case, account)).health_factor == pytest.approx(1.0, rel=TOLERANCE)
