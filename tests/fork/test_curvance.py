"""Curvance end to end: the project's own Curvance-shaped market on Anvil -> chainwatch -> a local Bot API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal

import pytest
from eth_abi import decode
from structlog.testing import capture_logs

from chainwatch.abi import calldata
from chainwatch.alerts.state import Thresholds, level_of
from chainwatch.config import CurvanceConfig
from chainwatch.devnet.curvance import (
    COLLATERAL_LINES, CollateralLines, CurvanceActions, CurvanceDevnet, compile_curvance_contracts, deploy_curvance,
)  # fmt: skip
from chainwatch.devnet.transactions import TxFailed
from chainwatch.index import Target
from chainwatch.model import Level, Reading
from chainwatch.protocols.curvance import Curvance
from chainwatch.reader import Reader
from chainwatch.recompute import read_targets
from chainwatch.rpc import Rpc
from tests.fork.conftest import (
    Chain,
    StartWatcher,
    assert_quiet_blocks_cost_no_eth_call,
    health_and_block,
    kinds,
    positions_read_at,
)
from tests.support.botapi import BotApiServer
from tests.support.rpcproxy import RpcProxy

YEAR = 365 * 24 * 3600


@pytest.fixture
async def curvance(chain: Chain) -> CurvanceDevnet:
    """The Curvance market over this test's devnet; the snapshot revert after the test removes it again."""
    return await deploy_curvance(chain.node.http_url, chain.devnet)


@pytest.fixture
async def market(chain: Chain, curvance: CurvanceDevnet) -> AsyncIterator[CurvanceActions]:
    async with CurvanceActions(chain.node.http_url, curvance) as actions:
        yield actions


def curvance_protocol(curvance: CurvanceDevnet) -> str:
    return f"""
[[protocols]]
kind = "curvance"
name = "curvance"
market_managers = ["{curvance.market_manager}"]
"""


async def soft_health(chain: Chain, curvance: CurvanceDevnet, account: str, block: int) -> Decimal:
    """The manager's own soft line over debt (`liquidationValuesOf`) for `account` at `block`, to 3 decimals as
    messages show it: the contract's sum, not chainwatch's."""
    raw = await chain.web3.eth.call(
        {"to": curvance.market_manager, "data": calldata("liquidationValuesOf(address)", account)}, block_identifier=block
    )
    c_soft, _, debt = decode(["uint256"] * 3, raw)
    return (Decimal(c_soft) / Decimal(debt)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR)


async def read_position(chain: Chain, curvance: CurvanceDevnet, account: str, block: int | None = None) -> Reading:
    """chainwatch's own reading of `account` in the devnet's market manager at `block` (the latest when None)."""
    rpc = Rpc([chain.node.http_url])
    try:
        block = block if block is not None else await rpc.block_number()
        protocol = Curvance(CurvanceConfig(name="curvance", market_managers=(curvance.market_manager,)))
        reader = Reader(rpc, chain.devnet.multicall3)
        await protocol.resolve(reader, block)
        ((_, outcome),) = await read_targets({"curvance": protocol}, reader, [Target(protocol="curvance", account=account)], block)
    finally:
        await rpc.close()
    assert not isinstance(outcome, Exception), outcome
    (reading,) = outcome.readings
    return reading


async def open_standard_positions(chain: Chain, market: CurvanceActions) -> tuple[str, str]:
    """A: 1 WETH against 1,000 USDC (2,000 x 0.8 / 1,000 = 1.60); B: 0.05 WBTC against 1,000 USDC
    (3,000 / 1.4 / 1,000 = 2.14), not exposed to WETH."""
    exposed, unexposed = chain.accounts[0], chain.accounts[1]
    await market.open_position(exposed, collateral={"WETH": 1}, borrow={"USDC": 1000})
    await market.open_position(unexposed, collateral={"WBTC": Decimal("0.05")}, borrow={"USDC": 1000})
    return exposed, unexposed


class TestPriceMoves:
    async def test_drop_alerts_only_the_exposed_account(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A WETH crash sends one CRITICAL for the WETH borrower on its manager; the WBTC one is not even re-read."""
        exposed, unexposed = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        with capture_logs() as logs:
            block = await chain.actions.set_price("WETH", 1300)  # A: 1300 * 0.8 / 1000 = 1.04
            await running.settled(block)
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and exposed in message.text and curvance.market_manager in message.text
        assert unexposed not in message.text and "Liquidation price WETH" in message.text
        assert positions_read_at(logs, block) == [1]

    async def test_recovery_after_price_returns(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """When the price comes back, one RECOVERED message follows the CRITICAL one."""
        await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        await running.settled(await chain.actions.set_price("WETH", 1300))
        await running.settled(await chain.actions.set_price("WETH", 2000))
        assert kinds(bot_api) == ["CRITICAL", "RECOVERED"]

    async def test_health_in_messages_equals_the_managers_soft_line_at_that_block(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Every message's health factor is the manager's own cSoft / debt at the message's block."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        for price in (1700, 1400, 1150, 2100):
            await running.settled(await chain.actions.set_price("WETH", price))
        assert kinds(bot_api) == ["WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"]
        for message in bot_api.messages:
            health, block = health_and_block(message.text)
            assert health == await soft_health(chain, curvance, exposed, block)


class TestOwnEvents:
    async def test_own_borrow_crosses_warn(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Borrowing more takes A from 1.60 to 1.33: one WARN, the account found in the Borrow event's data."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        block = await market.borrow(exposed, "USDC", 200)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        health, at = health_and_block(message.text)
        assert at == block and health == await soft_health(chain, curvance, exposed, block)

    async def test_liquidation_is_heard_from_event_data(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A liquidation repaying all of A's debt brings A's RECOVERED at the liquidation's block, no price moving."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        await running.settled(await chain.actions.set_price("WETH", 1150))  # 920 / 1000: liquidatable
        block = await market.liquidate(chain.accounts[4], exposed, debt="USDC", collateral="WETH")
        await running.settled(block)
        assert kinds(bot_api) == ["LIQUIDATABLE", "RECOVERED"]
        recovered = bot_api.messages[1].text
        assert "Health factor no debt" in recovered and f"Block {block}" in recovered.splitlines()

    async def test_stricter_soft_requirement_is_read_again_and_warns(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Raising WETH's soft requirement to 140% (TokenConfigUpdated) is resolved again: A falls to 1.428, warned."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        with capture_logs() as logs:
            block = await market.set_collateral_lines("WETH", CollateralLines(6500, soft_premium=4000, hard_premium=2500))
            await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        assert health_and_block(message.text)[0] == await soft_health(chain, curvance, exposed, block) == Decimal("1.428")
        assert [e["block"] for e in logs if e["event"] == "recompute.sources_changed"] == [block]


class TestQuietBlocks:
    async def test_irrelevant_blocks_cost_no_eth_call(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        proxy: RpcProxy,
    ) -> None:  # fmt: skip
        """Empty blocks and an unrelated transfer are processed without a single eth_call."""
        await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        await assert_quiet_blocks_cost_no_eth_call(chain, running, proxy)


class TestInterest:
    async def test_a_year_of_interest_alone_crosses_warn(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """With no transaction, a year at 10% takes 1,050 USDC of debt to 1,155: 1.524 falls to 1.38528 (shown 1.385), one WARN."""
        borrower = chain.accounts[0]
        await market.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1050})
        running = await start_watcher(protocols=curvance_protocol(curvance), refresh_every_blocks=1)
        await running.settled(await chain.web3.eth.block_number)
        assert bot_api.messages == []
        block = await chain.actions.advance_time(YEAR)
        await running.settled(block)
        (message,) = bot_api.messages
        health, at = health_and_block(message.text)
        assert message.text.split()[1] == "WARN" and at == block
        assert health == await soft_health(chain, curvance, borrower, block) == Decimal("1.385")  # 1.38528, rounded down


class TestIndex:
    async def test_exposure_discovered_on_chain(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher
    ) -> None:
        """At start the index maps the WETH feed to A only, and USDC's (behind a proxy, followed) to A and B."""
        exposed, unexposed = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        engine = running.watcher.engine
        assert engine is not None
        weth_feed = chain.devnet.aave_v3.reserves["WETH"].aggregator.lower()
        usdc_feed = chain.devnet.aave_v3.reserves["USDC"].aggregator.lower()
        assert engine.index.targets_priced_by(weth_feed) == {Target(protocol="curvance", account=exposed)}
        assert engine.index.targets_priced_by(usdc_feed) == {
            Target(protocol="curvance", account=exposed),
            Target(protocol="curvance", account=unexposed),
        }


class TestLiquidationAgreesWithCurvance:
    async def test_liquidatable_exactly_when_the_manager_liquidates(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """0.1% above the reported boundary: not liquidatable, liquidate reverts; 0.1% below: LIQUIDATABLE, it succeeds."""
        borrower, liquidator = chain.accounts[0], chain.accounts[3]
        await market.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1400})  # 1,600 / 1,400 = 1.143
        running = await start_watcher(protocols=curvance_protocol(curvance), watched=[borrower])
        boundary = (await read_position(chain, curvance, borrower)).liquidation_price
        assert boundary is not None and 1750 <= boundary < 1751  # 1,400 / 0.8, plus any seconds of interest
        # Each liquidation is mined a block after the price; a second of 10% interest (3e-9) is far inside 0.1%.
        block = await chain.actions.set_price("WETH", _usd(boundary * 1.001))
        await running.settled(block)
        above = await read_position(chain, curvance, borrower, block)
        assert above.health_factor >= 1.0 and level_of(above.health_factor, Thresholds()) != Level.LIQUIDATABLE
        assert kinds(bot_api) == ["CRITICAL"]  # from the start, nothing since
        with pytest.raises(TxFailed, match="liquidate"):
            await market.liquidate(liquidator, borrower, debt="USDC", collateral="WETH")

        block = await chain.actions.set_price("WETH", _usd(boundary * 0.999))
        await running.settled(block)
        below = await read_position(chain, curvance, borrower, block)
        assert level_of(below.health_factor, Thresholds()) == Level.LIQUIDATABLE
        assert kinds(bot_api) == ["CRITICAL", "LIQUIDATABLE"]
        assert health_and_block(bot_api.messages[1].text)[1] == block
        await market.liquidate(liquidator, borrower, debt="USDC", collateral="WETH")
        assert (await read_position(chain, curvance, borrower)).debt == 0


class TestContracts:
    async def test_borrow_beyond_the_borrow_limit_reverts(self, chain: Chain, market: CurvanceActions) -> None:
        """The manager refuses a borrow past the borrow limit (1 WETH at $2,000 x 0.75 = $1,500), short of the soft line."""
        borrower = chain.accounts[0]
        await market.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1400})
        with pytest.raises(TxFailed, match="borrow 200 USDC"):
            await market.borrow(borrower, "USDC", 200)

    async def test_status_of_is_nonpayable_and_reports_the_borrow_limit(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions
    ) -> None:
        """As deployed Curvance: statusOf is nonpayable and its maxDebt is the borrow limit; collConfig has the lines."""
        borrower = chain.accounts[0]
        block = await market.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1000})
        abi = (await compile_curvance_contracts())["MarketManager"].abi
        (status_of,) = [entry for entry in abi if entry.get("name") == "statusOf"]
        assert status_of["stateMutability"] == "nonpayable"
        raw = await chain.web3.eth.call(
            {"to": curvance.market_manager, "data": calldata("statusOf(address)", borrower)}, block_identifier=block
        )
        assert decode(["uint256"] * 3, raw) == (2000 * 10**18, 1500 * 10**18, 1000 * 10**18)
        weth = COLLATERAL_LINES["WETH"]
        config = await chain.web3.eth.call({"to": curvance.market_manager, "data": calldata(
            "collConfig(address)", curvance.tokens["WETH"].c_token)}, block_identifier=block)  # fmt: skip
        assert decode(["uint256"] * 3, config) == (weth.coll_ratio, 10_000 + weth.soft_premium, 10_000 + weth.hard_premium)

    async def test_a_borrow_limit_past_the_soft_line_is_refused(self, market: CurvanceActions) -> None:
        """As Curvance validates, a collRatio at or past the soft line (0.8 of value for 125%) cannot be set."""
        with pytest.raises(TxFailed, match="set cWETH"):
            await market.set_collateral_lines("WETH", CollateralLines(8000, soft_premium=2500, hard_premium=1000))

    async def test_protocol_reader_health_matches_the_soft_line(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions
    ) -> None:
        """ProtocolReader.getPositionHealth is cSoft / debt in WAD, and type(uint256).max without debt."""
        exposed, _ = await open_standard_positions(chain, market)
        block = await chain.web3.eth.block_number
        health = {}
        signature = "getPositionHealth(address,address,address,address,bool,uint256,bool,uint256,uint256)"
        no_token = "0x" + "00" * 20
        for account in (exposed, chain.accounts[3]):
            data = calldata(signature, curvance.market_manager, account, no_token, no_token, False, 0, False, 0, 0)
            raw = await chain.web3.eth.call({"to": curvance.protocol_reader, "data": data}, block_identifier=block)
            health[account], error_hit = decode(["uint256", "bool"], raw)
            assert not error_hit
        assert (Decimal(health[exposed]) / 10**18).quantize(Decimal("0.001"), rounding=ROUND_FLOOR) == await soft_health(
            chain, curvance, exposed, block
        ) == Decimal("1.600")
        assert health[chain.accounts[3]] == 2**256 - 1


def _usd(price: float) -> Decimal:
    return Decimal(str(round(price, 8)))
