"""Euler v2 end to end: the project's own EVC and EVaults on Anvil -> chainwatch -> a local Bot API server."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from chainwatch.devnet.euler import (
    EulerActions,
    EulerV2Devnet,
    deploy_euler_v2,
    sub_account,
)
from chainwatch.index import Target
from chainwatch.protocols.euler_v2 import CONTROLLER_STATUS, exposure_key
from tests.fork.conftest import (
    CHAT,
    Chain,
    StartWatcher,
    assert_quiet_blocks_cost_no_eth_call,
    health_and_block,
    kinds,
    positions_read_at,
)
from tests.support.botapi import BotApiServer
from tests.support.rpc_requests import count_selector, log_ranges
from tests.support.rpcproxy import RpcProxy

YEAR = 365 * 24 * 3600


@pytest.fixture
async def euler(chain: Chain) -> AsyncIterator[tuple[EulerV2Devnet, EulerActions]]:
    """Euler v2 deployed over the devnet; the `chain` fixture's snapshot revert removes it after the test."""
    deployed = await deploy_euler_v2(chain.node.http_url, chain.devnet)
    actions = EulerActions(chain.node.http_url, chain.devnet, deployed)
    yield deployed, actions
    await actions.aclose()


def euler_protocol(deployed: EulerV2Devnet) -> str:
    return f"""
[[protocols]]
kind = "euler_v2"
name = "euler"
evc = "{deployed.evc}"
vaults = ["{deployed.borrow_vault}"]
"""


async def health_at(actions: EulerActions, account: str, block: int) -> Decimal:
    """The vault's own accountLiquidity(account, true) ratio at `block`, to 3 decimals as messages show it."""
    collateral, liability = await actions.account_liquidity(account, block)
    return (Decimal(collateral) / Decimal(liability)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR)


async def open_standard_positions(chain: Chain, actions: EulerActions) -> tuple[str, str]:
    """A: 1 WETH against 1,000 USDC (health 1.70); B: 0.05 WBTC against 1,000 USDC (2.25), not exposed to WETH."""
    exposed, unexposed = chain.accounts[0], chain.accounts[1]
    await actions.open_position(exposed, collateral={"WETH": 1}, borrow=1000)
    await actions.open_position(unexposed, collateral={"WBTC": Decimal("0.05")}, borrow=1000)
    return exposed, unexposed


class TestPriceMoves:
    async def test_drop_alerts_only_the_exposed_account(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A WETH crash sends one CRITICAL for the WETH borrower only, and only that position is re-read."""
        deployed, actions = euler
        exposed, unexposed = await open_standard_positions(chain, actions)
        running = await start_watcher(protocols=euler_protocol(deployed))
        with capture_logs() as logs:
            block = await chain.actions.set_price("WETH", 1300)  # 1300 * 0.85 / 1000 = 1.105
            await running.settled(block)
        (message,) = bot_api.messages
        assert message.chat_id == CHAT and "CRITICAL on euler market" in message.text
        assert exposed in message.text and unexposed not in message.text
        assert "Liquidation price WETH 1,176.47 USD" in message.text  # 1000 / 0.85
        assert positions_read_at(logs, block) == [1]

    async def test_recovery_after_price_returns(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """When the price comes back, one RECOVERED message follows the CRITICAL one."""
        deployed, actions = euler
        await open_standard_positions(chain, actions)
        running = await start_watcher(protocols=euler_protocol(deployed))
        await running.settled(await chain.actions.set_price("WETH", 1300))
        await running.settled(await chain.actions.set_price("WETH", 2000))
        assert kinds(bot_api) == ["CRITICAL", "RECOVERED"]

    async def test_health_in_messages_equals_the_vault_at_that_block(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Every message's health factor is the vault's accountLiquidity(account, true) ratio at its block."""
        deployed, actions = euler
        exposed, _ = await open_standard_positions(chain, actions)
        running = await start_watcher(protocols=euler_protocol(deployed))
        for price in (1700, 1400, 1150, 2100):
            await running.settled(await chain.actions.set_price("WETH", price))
        assert kinds(bot_api) == ["WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"]
        for message in bot_api.messages:
            health, block = health_and_block(message.text)
            assert health == await health_at(actions, exposed, block)


class TestOwnEvents:
    async def test_own_borrow_crosses_warn(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """Borrowing 200 more takes the account from 1.70 to 1.42: one WARN at the borrow's block, no price change."""
        deployed, actions = euler
        exposed, _ = await open_standard_positions(chain, actions)
        running = await start_watcher(protocols=euler_protocol(deployed))
        block = await actions.borrow(exposed, 200)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        health, at = health_and_block(message.text)
        assert at == block and health == await health_at(actions, exposed, block)


class TestQuietBlocks:
    async def test_irrelevant_blocks_cost_no_eth_call(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher, proxy: RpcProxy
    ) -> None:
        """Empty blocks and an unrelated transfer are processed without a single eth_call."""
        deployed, actions = euler
        await open_standard_positions(chain, actions)
        running = await start_watcher(protocols=euler_protocol(deployed))
        await assert_quiet_blocks_cost_no_eth_call(chain, running, proxy)


class TestSubAccounts:
    async def test_sub_account_found_at_start_alerts_under_its_owner(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A position of sub-account owner^1, open before start, is found and alerted to the watched owner."""
        deployed, actions = euler
        owner = chain.accounts[2]
        await actions.open_position(owner, collateral={"WETH": 1}, borrow=1000, sub_id=1)
        running = await start_watcher(protocols=euler_protocol(deployed), watched=[owner])
        block = await chain.actions.set_price("WETH", 1300)
        await running.settled(block)
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and f"market {deployed.borrow_vault}#1" in message.text
        assert f"Account {owner} (user 0)" in message.text
        health, _ = health_and_block(message.text)
        assert health == await health_at(actions, sub_account(owner, 1), block)

    async def test_sub_account_opened_later_is_learned_from_the_evc(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A sub-account that starts borrowing after start-up (ControllerStatus) alerts at its first block."""
        deployed, actions = euler
        owner = chain.accounts[3]
        running = await start_watcher(protocols=euler_protocol(deployed), watched=[owner])
        block = await actions.open_position(owner, collateral={"WETH": 1}, borrow=1150, sub_id=7)  # 1700 / 1150
        await running.settled(block)
        (message,) = bot_api.messages
        assert "WARN" in message.text and f"market {deployed.borrow_vault}#7" in message.text
        health, at = health_and_block(message.text)
        assert at == block and health == await health_at(actions, sub_account(owner, 7), block)


def market_of(text: str) -> str:
    return text.split("\n")[0].rsplit(" ", 1)[-1]


# A restart scans again this far below the stored block ([chain] max_reorg_depth); small, for the devnet is short.
MAX_REORG_DEPTH = 2


def scanned_block(tmp_path: Path, protocol: str) -> int:
    """The block the stored discovery scan of `protocol` reached (the one account the test watches)."""
    with sqlite3.connect(tmp_path / "chainwatch.db") as db:
        ((block,),) = db.execute("SELECT block FROM discovery_scans WHERE protocol = ?", (protocol,)).fetchall()
    return int(block)


class TestDiscoveryCost:
    async def test_controllers_come_from_the_evc_logs_not_a_sweep_of_256(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer, proxy: RpcProxy,
    ) -> None:  # fmt: skip
        """Positions on sub-accounts 0, 7 and 255 are all found at start, with getControllers asked of those three
        alone (discovery, then the first read), not of the owner's 256 sub-accounts; a crash alerts each."""
        deployed, actions = euler
        owner = chain.accounts[2]
        for sub_id in (0, 7, 255):
            await actions.open_position(owner, collateral={"WETH": 1}, borrow=1000, sub_id=sub_id)
        running = await start_watcher(protocols=euler_protocol(deployed), watched=[owner])
        assert 3 <= count_selector(proxy, "getControllers(address)") <= 2 * 3
        await running.settled(await chain.actions.set_price("WETH", 1300))
        assert kinds(bot_api) == ["CRITICAL"] * 3
        vault = deployed.borrow_vault
        assert sorted(market_of(m.text) for m in bot_api.messages) == sorted([vault, f"{vault}#7", f"{vault}#255"])


class TestRestart:
    async def test_restart_scans_only_new_blocks_and_finds_a_position_opened_while_down(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer, proxy: RpcProxy, tmp_path: Path,
    ) -> None:  # fmt: skip
        """The first start scans the EVC's logs from block 0; after a restart with the database present, the scan
        starts at the stored block (less the reorg window) and still finds sub-account 9, opened while down."""
        deployed, actions = euler
        owner = chain.accounts[3]
        await actions.open_position(owner, collateral={"WETH": 1}, borrow=1000)
        depth = f"max_reorg_depth = {MAX_REORG_DEPTH}"
        first = await start_watcher(protocols=euler_protocol(deployed), watched=[owner], chain_extra=depth)
        assert min(start for start, _ in log_ranges(proxy, CONTROLLER_STATUS)) == 0
        await first.shutdown()
        scanned = scanned_block(tmp_path, "euler")
        opened = await actions.open_position(owner, collateral={"WETH": 1}, borrow=1000, sub_id=9)
        since = len(proxy.requests)
        again = await start_watcher(protocols=euler_protocol(deployed), watched=[owner], chain_extra=depth)
        ranges = log_ranges(proxy, CONTROLLER_STATUS, since)
        assert min(start for start, _ in ranges) == scanned - MAX_REORG_DEPTH + 1
        assert max(end for _, end in ranges) >= opened
        await again.settled(await chain.actions.set_price("WETH", 1300))
        vault = deployed.borrow_vault
        assert sorted(market_of(m.text) for m in bot_api.messages) == sorted([vault, f"{vault}#9"])


class TestInterest:
    async def test_a_year_of_interest_alone_crosses_warn(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """With no transaction at all, a year at 10% takes 1.60 to 1.45: the periodic refresh sends the WARN."""
        deployed, actions = euler
        borrower = chain.accounts[4]
        await actions.open_position(borrower, collateral={"WETH": 1}, borrow=Decimal("1062.5"))  # 1700 / 1062.5
        running = await start_watcher(protocols=euler_protocol(deployed), watched=[borrower], refresh_every_blocks=1)
        await running.settled(await chain.web3.eth.block_number)
        assert bot_api.messages == []
        block = await chain.actions.advance_time(YEAR)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN"
        health, at = health_and_block(message.text)
        assert at == block and health == await health_at(actions, borrower, block) == Decimal("1.454")  # shown rounded down


class TestIndex:
    async def test_feeds_map_to_the_exposed_accounts(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher
    ) -> None:
        """The WETH feed maps to the WETH borrower only; USDC's (behind a proxy, followed) to both borrowers."""
        deployed, actions = euler
        exposed, unexposed = await open_standard_positions(chain, actions)
        running = await start_watcher(protocols=euler_protocol(deployed))
        engine = running.watcher.engine
        assert engine is not None
        reserves = chain.devnet.aave_v3.reserves
        targets = {account: Target(protocol="euler", account=account) for account in (exposed, unexposed)}
        assert engine.index.targets_priced_by(reserves["WETH"].aggregator.lower()) == {targets[exposed]}
        assert engine.index.targets_priced_by(reserves["USDC"].aggregator.lower()) == set(targets.values())
        assert engine.index.exposure_of(targets[unexposed]) == {
            exposure_key(deployed.borrow_vault, deployed.borrow_vault),
            exposure_key(deployed.borrow_vault, deployed.vaults["WBTC"]),
        }


class TestLiquidation:
    async def test_liquidation_is_read_at_its_block(
        self, chain: Chain, euler: tuple[EulerV2Devnet, EulerActions], start_watcher: StartWatcher,
        bot_api: BotApiServer,
    ) -> None:  # fmt: skip
        """A liquidation that takes all of a LIQUIDATABLE borrower's debt is followed by RECOVERED at its block."""
        deployed, actions = euler
        violator, liquidator = chain.accounts[0], chain.accounts[5]
        await actions.open_position(violator, collateral={"WETH": 1}, borrow=1000)
        running = await start_watcher(protocols=euler_protocol(deployed), watched=[violator])
        await running.settled(await chain.actions.set_price("WETH", 1150))  # 1150 * 0.85 / 1000 = 0.9775
        block = await actions.liquidate(liquidator, violator, seize="WETH", deposit={"WETH": 2})
        await running.settled(block)
        assert kinds(bot_api) == ["LIQUIDATABLE", "RECOVERED"]
        assert f"Block {block}" in bot_api.messages[1].text
        assert await actions.account_liquidity(violator, block) == (0, 0)  # all collateral seized, no debt left
