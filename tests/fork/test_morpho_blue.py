"""Morpho Blue end to end: the real Morpho on Anvil (on the Aave devnet's tokens and feeds) -> chainwatch -> Bot API."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import msgspec
import pytest
from eth_abi import decode
from structlog.testing import capture_logs
from web3 import Web3

from chainwatch.abi import calldata
from chainwatch.alerts.message import short_market
from chainwatch.alerts.state import Thresholds, level_of
from chainwatch.config import MorphoBlueConfig
from chainwatch.devnet.morpho import MorphoActions, MorphoBlueDevnet, deploy_morpho_blue
from chainwatch.devnet.transactions import TxFailed
from chainwatch.index import Target
from chainwatch.model import Level, Reading
from chainwatch.protocols import morpho_blue
from chainwatch.protocols.morpho_blue import MorphoBlue
from chainwatch.reader import Reader
from chainwatch.recompute import read_targets
from chainwatch.rpc import Rpc
from tests.fork.conftest import (
    Chain,
    aave_protocol,
    StartWatcher,
    assert_quiet_blocks_cost_no_eth_call,
    health_and_block,
    kinds,
    positions_read_at,
)
from tests.support.botapi import BotApiServer
from tests.support.rpc_requests import count_selector, inner_calls as inner_calls_since, log_ranges
from tests.support.rpcproxy import RpcProxy

WETH, WBTC = "WETH/USDC", "WBTC/USDC"
YEAR = 365 * 24 * 3600


@dataclass
class Morpho:
    devnet: MorphoBlueDevnet
    actions: MorphoActions

    def id(self, market: str) -> str:
        return self.devnet.markets[market].id

    def protocol(self, markets: tuple[str, ...] = (WETH, WBTC)) -> str:
        """The `[[protocols]]` entry; `markets` are listed in the config, others must be discovered."""
        ids = ", ".join(f'"{self.id(market)}"' for market in markets)
        return f"""
[[protocols]]
kind = "morpho_blue"
name = "morpho"
morpho = "{self.devnet.morpho}"
markets = [{ids}]
"""


@pytest.fixture
async def morpho(chain: Chain) -> AsyncIterator[Morpho]:
    """Morpho Blue deployed on the test's devnet; the `chain` fixture's snapshot revert removes it afterwards."""
    devnet = await deploy_morpho_blue(chain.node.http_url, chain.devnet.aave_v3.reserves)
    async with MorphoActions(chain.node.http_url, devnet) as actions:
        yield Morpho(devnet=devnet, actions=actions)


async def open_standard_positions(chain: Chain, morpho: Morpho) -> tuple[str, str]:
    """A: 1 WETH against 1,000 USDC (health 1.72); B: 0.05 WBTC against 1,000 USDC (2.31), in the other market."""
    exposed, unexposed = chain.accounts[0], chain.accounts[1]
    await morpho.actions.open_position(exposed, WETH, collateral=1, borrow=1000)
    await morpho.actions.open_position(unexposed, WBTC, collateral=Decimal("0.05"), borrow=1000)
    return exposed, unexposed


async def morpho_health_at(chain: Chain, morpho: Morpho, market: str, account: str, block: int) -> Decimal:
    """Health from Morpho's own storage and oracle at `block`, interest accrued off chain as `_accrueInterest`
    would (IRM rate x Taylor-compounded elapsed time), to 3 decimals as messages show it."""
    m = morpho.devnet.markets[market]
    id_ = bytes.fromhex(m.id[2:])

    async def view(to: str, data: bytes) -> bytes:
        call = {"to": to, "data": data}
        return await chain.web3.eth.call(call, block_identifier=block)  # type: ignore[arg-type]

    totals = decode(["uint128"] * 6, await view(morpho.devnet.morpho, calldata("market(bytes32)", id_)))
    position = await view(morpho.devnet.morpho, calldata("position(bytes32,address)", id_, account))
    _, shares, collateral = decode(["uint256", "uint128", "uint128"], position)
    (price,) = decode(["uint256"], await view(m.oracle, calldata("price()")))
    params = "(address,address,address,address,uint256)"
    (rate,) = decode(["uint256"], await view(m.irm, calldata(
        f"borrowRateView({params},(uint128,uint128,uint128,uint128,uint128,uint128))", m.params, totals)))  # fmt: skip
    elapsed = (await chain.web3.eth.get_block(block))["timestamp"] - totals[4]
    first = rate * elapsed
    compounded = first + first * first // (2 * 10**18) + first * first // (2 * 10**18) * first // (3 * 10**18)
    total_borrow = totals[2] + totals[2] * compounded // 10**18
    # Morpho._isHealthy, written out again here so the test does not lean on the module it checks.
    borrowed = -(-shares * (total_borrow + 1) // (totals[3] + 10**6))
    limit = collateral * price // 10**36 * m.lltv // 10**18
    return (Decimal(limit) / Decimal(borrowed)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR)


def market_of(text: str) -> str:
    return text.split("\n")[0].rsplit(" ", 1)[-1]


class TestDeployment:
    async def test_markets_as_morpho_records_them(self, chain: Chain, morpho: Morpho) -> None:
        """Each market id is Morpho's own (idToMarketParams returns its params), with the LLTVs asked for."""
        for market in morpho.devnet.markets.values():
            data = calldata("idToMarketParams(bytes32)", bytes.fromhex(market.id[2:]))
            raw = await chain.web3.eth.call({"to": morpho.devnet.morpho, "data": data})  # type: ignore[typeddict-item]
            stored = decode(["address", "address", "address", "address", "uint256"], raw)
            assert tuple(Web3.to_checksum_address(a) for a in stored[:4]) + (stored[4],) == market.params
        assert {name: m.lltv for name, m in morpho.devnet.markets.items()} == {WETH: 86 * 10**16, WBTC: 77 * 10**16}

    async def test_devnet_record_round_trips_as_json(self, morpho: Morpho) -> None:
        """The deployment record nests in the devnet file: JSON out and back gives the same record."""
        encoded = msgspec.json.encode(morpho.devnet)
        assert msgspec.json.decode(encoded, type=MorphoBlueDevnet) == morpho.devnet


class TestPriceMoves:
    async def test_drop_alerts_only_the_weth_market_borrower(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A WETH crash sends one CRITICAL for the WETH-market borrower only; the WBTC-market borrower isn't re-read."""
        exposed, unexposed = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol(), watched=[exposed, unexposed])
        with capture_logs() as logs:
            block = await chain.actions.set_price("WETH", 1300)  # A: 1300 * 0.86 / 1000 = 1.118
            await running.settled(block)
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and exposed in message.text and unexposed not in message.text
        assert market_of(message.text) == short_market(morpho.id(WETH))
        assert positions_read_at(logs, block) == [2]  # A alone: its reading in each configured market

    async def test_recovery_after_price_returns(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """When the price comes back, one RECOVERED message follows the CRITICAL one."""
        await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol())
        await running.settled(await chain.actions.set_price("WETH", 1300))
        await running.settled(await chain.actions.set_price("WETH", 2000))
        assert kinds(bot_api) == ["CRITICAL", "RECOVERED"]

    async def test_health_in_messages_equals_morpho_at_that_block(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Every message's health factor is Morpho's own position, market and oracle price at its block, accrued."""
        exposed, _ = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol())
        for price in (1700, 1350, 1150, 2100):
            await running.settled(await chain.actions.set_price("WETH", price))
        assert kinds(bot_api) == ["WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"]
        for message in bot_api.messages:
            health, block = health_and_block(message.text)
            assert health == await morpho_health_at(chain, morpho, WETH, exposed, block)
        assert "Liquidation price WETH 1,162.79 USDC" in bot_api.messages[0].text  # 1000 / (1 * 0.86), interest aside


class TestOwnEvents:
    async def test_own_borrow_crosses_warn(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Borrowing 200 more takes the account from 1.72 to 1.43: one WARN, with no price change at all."""
        exposed, _ = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol())
        block = await morpho.actions.borrow(exposed, WETH, 200)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        health, at = health_and_block(message.text)
        assert at == block and health == await morpho_health_at(chain, morpho, WETH, exposed, block)


    async def test_full_repay_recovers(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Repaying every share after a crash (a Repay event, owner in topic3) sends RECOVERED with no debt left."""
        exposed, _ = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol())
        await running.settled(await chain.actions.set_price("WETH", 1300))
        block = await morpho.actions.repay(exposed, WETH)
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL", "RECOVERED"]
        assert "Health factor no debt" in bot_api.messages[1].text and f"Block {block}" in bot_api.messages[1].text

class TestInterest:
    async def test_a_year_of_interest_alone_crosses_warn(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """With no transaction at all, a year at 10% takes 1.56 to 1.42 and the periodic refresh alerts WARN."""
        borrower = chain.accounts[0]
        await morpho.actions.open_position(borrower, WETH, collateral=1, borrow=1100)  # 1720 / 1100 = 1.564
        running = await start_watcher(protocols=morpho.protocol(), watched=[borrower], refresh_every_blocks=1)
        block = await chain.actions.advance_time(YEAR)
        await running.settled(block)
        (message,) = bot_api.messages
        health, at = health_and_block(message.text)
        assert message.text.split()[1] == "WARN" and at == block
        assert health == await morpho_health_at(chain, morpho, WETH, borrower, block) == Decimal("1.414")  # shown rounded down


class TestQuietBlocks:
    async def test_irrelevant_blocks_cost_no_eth_call(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, proxy: RpcProxy
    ) -> None:
        """Empty blocks and an unrelated transfer are processed without a single eth_call."""
        await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol())
        await assert_quiet_blocks_cost_no_eth_call(chain, running, proxy)


class TestDiscovery:
    async def test_markets_found_in_past_events(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher
    ) -> None:
        """With no market configured, each account's market is found in its own past events and indexed."""
        exposed, unexposed = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol(markets=()), watched=[exposed, unexposed])
        engine = running.watcher.engine
        assert engine is not None
        assert engine.index.exposure_of(Target(protocol="morpho", account=exposed)) == {morpho.id(WETH)}
        assert engine.index.exposure_of(Target(protocol="morpho", account=unexposed)) == {morpho.id(WBTC)}

    async def test_new_market_from_own_event_is_read_and_priced(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A watched account opening a position in a market nobody knew: resolved, subscribed, then alerted on."""
        newcomer = chain.accounts[2]
        running = await start_watcher(protocols=morpho.protocol(markets=()), watched=[newcomer])
        opened = await morpho.actions.open_position(newcomer, WBTC, collateral=Decimal("0.05"), borrow=1000)
        await running.settled(opened)
        block = await chain.actions.set_price("WBTC", 30000)  # 0.05 * 30000 * 0.77 / 1000 = 1.155
        await running.settled(block)
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and newcomer in message.text and market_of(message.text) == short_market(morpho.id(WBTC))

    async def test_price_move_reaches_a_discovered_market(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A WETH crash alerts a borrower whose WETH market was found only by discovery at start-up."""
        exposed, _ = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol(markets=()), watched=[exposed])
        await running.settled(await chain.actions.set_price("WETH", 1300))
        assert kinds(bot_api) == ["CRITICAL"]


class TestNarrowDiscovery:
    async def test_a_new_market_of_one_account_resolves_that_market_and_reads_that_account(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer, proxy: RpcProxy
    ) -> None:
        """A and B borrow in the WETH market (found at start); A then enters the WBTC market: only that market's
        params are read again (not WETH's, not Aave's reserves), no pass reads B, and A's new market alerts."""
        a, b = chain.accounts[0], chain.accounts[1]
        for account in (a, b):
            await morpho.actions.open_position(account, WETH, collateral=1, borrow=1000)
        running = await start_watcher(protocols=morpho.protocol(markets=()) + aave_protocol(chain), watched=[a, b])
        since = len(proxy.requests)
        with capture_logs() as logs:
            opened = await morpho.actions.open_position(a, WBTC, collateral=Decimal("0.05"), borrow=1000)
            await running.settled(opened)
        params = [data for _, data in inner_calls_since(proxy, since)
                  if data[:4] == calldata("idToMarketParams(bytes32)", b"\0" * 32)[:4]]  # fmt: skip
        assert params == [calldata("idToMarketParams(bytes32)", bytes.fromhex(morpho.id(WBTC)[2:]))]
        assert count_selector(proxy, "getReservesList()", since) == 0  # Aave is not resolved again
        passes = [e["positions"] for e in logs if e["event"] == "recompute.read"]
        assert passes and max(passes) <= 2  # A's two markets (and A's Aave account, which holds nothing): never B
        await running.settled(await chain.actions.set_price("WBTC", 30000))  # 0.05 * 30000 * 0.77 / 1000 = 1.155
        (message,) = bot_api.messages
        assert a in message.text and market_of(message.text) == short_market(morpho.id(WBTC))


class TestRestart:
    async def test_restart_scans_only_new_blocks_and_finds_a_market_opened_while_down(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer, proxy: RpcProxy,
        tmp_path: Path,
    ) -> None:  # fmt: skip
        """After a restart with the database present, discovery scans from the stored block (less the reorg
        window) instead of block 0, restores the WETH market found before, and finds the WBTC one opened while down."""
        account = chain.accounts[2]
        await morpho.actions.open_position(account, WETH, collateral=1, borrow=1000)
        depth = 2  # [chain] max_reorg_depth: what a restart scans again below the stored block
        first = await start_watcher(protocols=morpho.protocol(markets=()), watched=[account],
                                    chain_extra=f"max_reorg_depth = {depth}")  # fmt: skip
        assert min(start for start, _ in log_ranges(proxy, morpho_blue.SUPPLY_COLLATERAL)) == 0
        await first.shutdown()
        with sqlite3.connect(tmp_path / "chainwatch.db") as db:
            ((scanned,),) = db.execute("SELECT block FROM discovery_scans WHERE protocol = 'morpho'").fetchall()
        opened = await morpho.actions.open_position(account, WBTC, collateral=Decimal("0.05"), borrow=1000)
        since = len(proxy.requests)
        again = await start_watcher(protocols=morpho.protocol(markets=()), watched=[account],
                                    chain_extra=f"max_reorg_depth = {depth}")  # fmt: skip
        for topic0 in (morpho_blue.SUPPLY_COLLATERAL, morpho_blue.BORROW):
            ranges = log_ranges(proxy, topic0, since)
            assert min(start for start, _ in ranges) == scanned - depth + 1
            assert max(end for _, end in ranges) >= opened
        engine = again.watcher.engine
        assert engine is not None
        assert engine.index.exposure_of(Target(protocol="morpho", account=account)) == {morpho.id(WETH), morpho.id(WBTC)}
        await again.settled(await chain.actions.set_price("WBTC", 30000))
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and market_of(message.text) == short_market(morpho.id(WBTC))


class TestLiquidationAgreesWithMorpho:
    async def test_liquidatable_exactly_when_morpho_liquidates(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """0.1% above the boundary: not liquidatable, liquidate reverts; 0.1% below: LIQUIDATABLE, it succeeds."""
        borrower, liquidator = chain.accounts[0], chain.accounts[3]
        await morpho.actions.open_position(borrower, WETH, collateral=1, borrow=1500)  # 1720 / 1500 = 1.147
        running = await start_watcher(protocols=morpho.protocol(), watched=[borrower])
        boundary = (await read_weth_position(chain, morpho, borrower)).liquidation_price
        assert boundary is not None and 1744 < boundary < 1745  # 1500 / 0.86, plus a few seconds of interest
        # Each liquidation is mined a block after the price; a second of 10% interest (3e-9) is far inside 0.1%.
        block = await chain.actions.set_price("WETH", _usd(boundary * 1.001))
        await running.settled(block)
        above = await read_weth_position(chain, morpho, borrower, block)
        assert above.health_factor >= 1.0 and level_of(above.health_factor, Thresholds()) != Level.LIQUIDATABLE
        assert kinds(bot_api) == ["CRITICAL"]  # from the start, nothing since
        with pytest.raises(TxFailed, match="position is healthy"):
            await morpho.actions.liquidate(liquidator, borrower, WETH)

        block = await chain.actions.set_price("WETH", _usd(boundary * 0.999))
        await running.settled(block)
        below = await read_weth_position(chain, morpho, borrower, block)
        assert level_of(below.health_factor, Thresholds()) == Level.LIQUIDATABLE
        assert kinds(bot_api) == ["CRITICAL", "LIQUIDATABLE"]
        assert health_and_block(bot_api.messages[1].text)[1] == block
        _, shares_before, _ = await morpho.actions.position(WETH, borrower)
        await morpho.actions.liquidate(liquidator, borrower, WETH)
        _, shares_after, _ = await morpho.actions.position(WETH, borrower)
        assert shares_after < shares_before


async def read_weth_position(chain: Chain, morpho: Morpho, account: str, block: int | None = None) -> Reading:
    """chainwatch's own reading of `account` in the WETH market at `block` (the latest when None)."""
    rpc = Rpc([chain.node.http_url])
    try:
        block = block if block is not None else await rpc.block_number()
        protocol = MorphoBlue(MorphoBlueConfig(name="morpho", morpho=morpho.devnet.morpho, markets=(morpho.id(WETH),)))
        reader = Reader(rpc, chain.devnet.multicall3)
        await protocol.resolve(reader, block)
        target = Target(protocol="morpho", account=account)
        ((_, outcome),) = await read_targets({"morpho": protocol}, reader, [target], block)
    finally:
        await rpc.close()
    assert not isinstance(outcome, Exception), outcome
    (reading,) = outcome.readings
    return reading


def _usd(price: float) -> Decimal:
    return Decimal(str(round(price, 8)))


async def hand_griefing_market(chain: Chain, morpho: Morpho, victim: str) -> str:
    """An attacker deploys a token whose decimals() reverts, creates a market with it as collateral and supplies
    some on behalf of `victim`; returns the market id."""
    from chainwatch.devnet.morpho import market_id
    from chainwatch.devnet.solc import compile_own_contracts
    from chainwatch.devnet.transactions import TxPlan, execute
    from chainwatch.devnet.transactions import Rpc as DevnetRpc

    attacker, weth = chain.accounts[6], morpho.devnet.markets[WETH]
    rpc = DevnetRpc(chain.node.http_url)
    try:
        plan = await TxPlan.for_senders(rpc, [attacker])
        token = plan.deploy("deploy the griefing token", attacker,
                            (await compile_own_contracts())["RevertingDecimalsToken"].creation_code())  # fmt: skip
        await execute(rpc, plan.txs)
    finally:
        await rpc.aclose()
    params = (weth.loan_token, token, weth.oracle, weth.irm, weth.lltv)
    await morpho.actions.hand_market(attacker, victim, params, 10**18)
    return market_id(params)


class TestGriefing:
    async def test_market_with_reverting_decimals_at_start_is_quarantined(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A market whose collateral's decimals() reverts, handed to a watched account before start: chainwatch
        still starts, logs the market quarantined and the position unreadable, and alerts the account's own
        market and the other account on the next crash."""
        exposed, unexposed = await open_standard_positions(chain, morpho)
        grief = await hand_griefing_market(chain, morpho, exposed)
        with capture_logs() as logs:
            running = await start_watcher(protocols=morpho.protocol(markets=()), watched=[exposed, unexposed])
            await running.settled(await chain.actions.set_price("WETH", 1300))
            await running.settled(await chain.actions.set_price("WBTC", 30000))
        assert sorted(kinds(bot_api)) == ["CRITICAL", "CRITICAL"]
        assert {exposed, unexposed} == {a for a in (exposed, unexposed) for m in bot_api.messages if a in m.text}
        unreadable = [e for e in logs if e["event"] == "recompute.position_unreadable"]
        assert [(e["account"], e["market"]) for e in unreadable] == [(exposed, grief)]
        assert any(e["event"] == "morpho.market_quarantined" and e["market"] == grief for e in logs)
        engine = running.watcher.engine
        assert engine is not None
        assert [u.market for u in engine.unreadable[Target(protocol="morpho", account=exposed)]] == [grief]

    async def test_griefing_market_arriving_at_run_time_is_quarantined(
        self, chain: Chain, morpho: Morpho, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """The same market handed after start: the resolve it causes quarantines it, and a later crash still
        alerts the account's own market."""
        exposed, _ = await open_standard_positions(chain, morpho)
        running = await start_watcher(protocols=morpho.protocol(markets=()), watched=[exposed])
        with capture_logs() as logs:
            grief = await hand_griefing_market(chain, morpho, exposed)
            await running.settled(await chain.web3.eth.block_number)
            await running.settled(await chain.actions.set_price("WETH", 1300))
        assert kinds(bot_api) == ["CRITICAL"]
        assert not [e for e in logs if e["event"] == "recompute.resolve_refused"]
        assert [e["market"] for e in logs if e["event"] == "recompute.position_unreadable"] == [grief]
