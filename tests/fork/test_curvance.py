"""Curvance end to end: the project's own Curvance-shaped market on Anvil -> chainwatch -> a local Bot API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal

import pytest
from eth_abi import decode
from structlog.testing import capture_logs

from chainwatch.abi import calldata
from chainwatch.devnet.curvance import CurvanceActions, CurvanceDevnet, deploy_curvance
from chainwatch.devnet.transactions import TxFailed
from chainwatch.index import Target
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


async def status_health(chain: Chain, curvance: CurvanceDevnet, account: str, block: int) -> Decimal:
    """The manager's own `maxDebt / debt` for `account` at `block`, to 3 decimals as messages show it."""
    raw = await chain.web3.eth.call(
        {"to": curvance.market_manager, "data": calldata("statusOf(address)", account)}, block_identifier=block
    )
    _, max_debt, debt = decode(["uint256"] * 3, raw)
    return (Decimal(max_debt) / Decimal(debt)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR)


async def open_standard_positions(chain: Chain, market: CurvanceActions) -> tuple[str, str]:
    """A: 1 WETH against 1,000 USDC (health 1.70); B: 0.05 WBTC against 1,000 USDC (2.25), not exposed to WETH."""
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
            block = await chain.actions.set_price("WETH", 1300)  # A: 1300 * 0.85 / 1000 = 1.105
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

    async def test_health_in_messages_equals_status_of_at_that_block(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Every message's health factor is the manager's statusOf maxDebt / debt at the message's block."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        for price in (1700, 1400, 1150, 2100):
            await running.settled(await chain.actions.set_price("WETH", price))
        assert kinds(bot_api) == ["WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"]
        for message in bot_api.messages:
            health, block = health_and_block(message.text)
            assert health == await status_health(chain, curvance, exposed, block)


class TestOwnEvents:
    async def test_own_borrow_crosses_warn(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Borrowing more takes A from 1.70 to 1.42: one WARN, the account found in the Borrow event's data."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        block = await market.borrow(exposed, "USDC", 200)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        health, at = health_and_block(message.text)
        assert at == block and health == await status_health(chain, curvance, exposed, block)

    async def test_liquidation_is_heard_from_event_data(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A liquidation repaying all of A's debt brings A's RECOVERED at the liquidation's block, no price moving."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        await running.settled(await chain.actions.set_price("WETH", 1150))  # 977.5 / 1000: liquidatable
        block = await market.liquidate(chain.accounts[4], exposed, debt="USDC", collateral="WETH")
        await running.settled(block)
        assert kinds(bot_api) == ["LIQUIDATABLE", "RECOVERED"]
        recovered = bot_api.messages[1].text
        assert "Health factor no debt" in recovered and f"Block {block}" in recovered.splitlines()

    async def test_collateral_ratio_cut_touches_its_holders(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions, start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Cutting WETH's collRatio to 0.65 re-reads WETH holders only: A falls to 1.30 and is warned."""
        exposed, _ = await open_standard_positions(chain, market)
        running = await start_watcher(protocols=curvance_protocol(curvance))
        with capture_logs() as logs:
            block = await market.set_coll_ratio("WETH", "0.65")
            await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        assert health_and_block(message.text)[0] == await status_health(chain, curvance, exposed, block)
        assert positions_read_at(logs, block) == [1]


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
        """With no transaction, a year at 10% takes 1,100 USDC of debt to 1,210: 1.545 falls to 1.40496 (shown 1.404), one WARN."""
        borrower = chain.accounts[0]
        await market.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1100})
        running = await start_watcher(protocols=curvance_protocol(curvance), refresh_every_blocks=1)
        await running.settled(await chain.web3.eth.block_number)
        assert bot_api.messages == []
        block = await chain.actions.advance_time(YEAR)
        await running.settled(block)
        (message,) = bot_api.messages
        health, at = health_and_block(message.text)
        assert message.text.split()[1] == "WARN" and at == block
        assert health == await status_health(chain, curvance, borrower, block) == Decimal("1.404")  # 1.40496, rounded down


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


class TestContracts:
    async def test_borrow_beyond_max_debt_reverts(self, chain: Chain, market: CurvanceActions) -> None:
        """The manager refuses a borrow that would take debt past maxDebt (1 WETH at $2,000 x 0.85 = $1,700)."""
        borrower = chain.accounts[0]
        await market.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1600})
        with pytest.raises(TxFailed, match="borrow 200 USDC"):
            await market.borrow(borrower, "USDC", 200)

    async def test_protocol_reader_health_matches_status_of(
        self, chain: Chain, curvance: CurvanceDevnet, market: CurvanceActions
    ) -> None:
        """ProtocolReader.getPositionHealth is statusOf's maxDebt / debt in WAD, and type(uint256).max without debt."""
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
        assert (Decimal(health[exposed]) / 10**18).quantize(Decimal("0.001"), rounding=ROUND_FLOOR) == await status_health(
            chain, curvance, exposed, block
        )
        assert health[chain.accounts[3]] == 2**256 - 1
