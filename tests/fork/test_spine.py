"""The event-driven spine end to end: real Aave v3 on Anvil -> chainwatch -> a local Bot API server."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from eth_abi import decode
from structlog.testing import capture_logs

from chainwatch.abi import calldata
from chainwatch.index import Target
from chainwatch.rpc import Rpc
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
from tests.support.rpcproxy import RpcProxy


async def health_at(chain: Chain, account: str, block: int) -> Decimal:
    """The Pool's own health factor for `account` at `block`, to 3 decimals as messages show it (rounded down)."""
    raw = await chain.web3.eth.call(
        {"to": chain.devnet.aave_v3.pool, "data": calldata("getUserAccountData(address)", account)},
        block_identifier=block,
    )
    health = decode(["uint256"] * 6, raw)[5]
    return (Decimal(health) / Decimal(10**18)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR)


async def open_standard_positions(chain: Chain) -> tuple[str, str]:
    """A: 1 WETH against 1,000 USDC (health 1.70); B: 0.05 WBTC against 1,000 USDC (2.25), not exposed to WETH."""
    exposed, unexposed = chain.accounts[0], chain.accounts[1]
    await chain.actions.open_position(exposed, supply={"WETH": 1}, borrow={"USDC": 1000})
    await chain.actions.open_position(unexposed, supply={"WBTC": Decimal("0.05")}, borrow={"USDC": 1000})
    return exposed, unexposed


class TestPriceMoves:
    async def test_drop_alerts_only_the_exposed_account(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A WETH crash sends exactly one CRITICAL for the WETH borrower, nothing for the WBTC one, which isn't re-read."""
        exposed, unexposed = await open_standard_positions(chain)
        running = await start_watcher()
        with capture_logs() as logs:
            block = await chain.actions.set_price("WETH", 1300)  # A: 1300 * 0.85 / 1000 = 1.105
            await running.settled(block)
        assert [m.chat_id for m in bot_api.messages] == [CHAT]
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and exposed in message.text and "user 0" in message.text
        assert unexposed not in message.text
        assert "Liquidation price WETH 1,176.47 USD" in message.text  # 1300 / 1.105: where health reaches 1.0
        assert positions_read_at(logs, block) == [1]

    async def test_recovery_after_price_returns(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """When the price comes back, one RECOVERED message follows the CRITICAL one."""
        await open_standard_positions(chain)
        running = await start_watcher()
        await running.settled(await chain.actions.set_price("WETH", 1300))
        await running.settled(await chain.actions.set_price("WETH", 2000))
        assert kinds(bot_api) == ["CRITICAL", "RECOVERED"]

    async def test_health_in_messages_equals_the_pool_at_that_block(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Every message's health factor is Pool.getUserAccountData at the message's block."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        for price in (1700, 1400, 1150, 2100):
            await running.settled(await chain.actions.set_price("WETH", price))
        assert kinds(bot_api) == ["WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"]
        for message in bot_api.messages:
            health, block = health_and_block(message.text)
            assert health == await health_at(chain, exposed, block)


class TestOwnEvents:
    async def test_own_borrow_crosses_warn(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Borrowing more takes the account from 1.70 to 1.42: one WARN, with no price change at all."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        block = await chain.actions.borrow(exposed, "USDC", 200)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and exposed in message.text
        health, at = health_and_block(message.text)
        assert at == block and health == await health_at(chain, exposed, block)


class TestQuietBlocks:
    async def test_irrelevant_blocks_cost_no_eth_call(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy
    ) -> None:
        """Empty blocks and an unrelated transfer are processed without a single eth_call."""
        await open_standard_positions(chain)
        running = await start_watcher()
        await assert_quiet_blocks_cost_no_eth_call(chain, running, proxy)


class TestResilience:
    async def test_dropped_websocket_loses_no_alert(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """The price crashes while no WebSocket can be had: after reconnecting, the backfill finds it and alerts."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        assert running.watcher.listener is not None
        connections = running.watcher.listener.connections
        proxy.refuse_websockets = True
        with capture_logs() as logs:
            assert await proxy.drop_websockets() == 1
            block = await chain.actions.set_price("WETH", 1300)  # no subscription can see this block
            proxy.refuse_websockets = False
            await running.settled(block)
        assert running.watcher.listener.connections > connections
        backfills = [e for e in logs if e["event"] == "listener.backfilled"]
        assert backfills and backfills[0]["from_block"] < block <= backfills[0]["to_block"]
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and exposed in message.text

    async def test_provider_without_block_hash_logs(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """A provider that refuses eth_getLogs by blockHash costs nothing: the block is fetched by number."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        proxy.refuse_block_hash_logs = True
        with capture_logs() as logs:
            await running.settled(await chain.actions.set_price("WETH", 1300))
        assert any(e["event"] == "listener.block_hash_logs_refused" for e in logs)
        assert not any(e["event"] == "listener.disconnected" for e in logs)
        (message,) = bot_api.messages
        assert "CRITICAL" in message.text and exposed in message.text

    async def test_node_with_empty_blooms(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """Heads with empty blooms, yet logs for their blocks: blooms are distrusted, and no alert is lost."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        proxy.empty_blooms = True
        with capture_logs() as logs:
            await running.settled(await chain.actions.set_price("WETH", 1400))
            await running.settled(await chain.actions.set_price("WETH", 1300))
        assert any(e["event"] == "listener.blooms_unreliable" for e in logs)
        assert kinds(bot_api) == ["CRITICAL"]
        assert exposed in bot_api.messages[0].text

    async def test_rate_limited_send_is_retried_once(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A 429 with retry_after=1 delays the alert by at least a second, and it arrives exactly once."""
        await open_standard_positions(chain)
        running = await start_watcher()
        bot_api.fail_next(1, status=429, retry_after=1)
        block = await chain.actions.set_price("WETH", 1300)
        await running.settled(block)
        sends = [r for r in bot_api.requests if r.method == "sendMessage"]
        assert len(sends) == 2 and len(bot_api.messages) == 1
        assert sends[1].received_at - sends[0].received_at >= 1.0

    async def test_restart_neither_repeats_nor_misses(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """After a restart an alert already sent is not repeated, and a crash that happened while down is alerted."""
        exposed, _ = await open_standard_positions(chain)
        first = await start_watcher()
        await first.settled(await chain.actions.set_price("WETH", 1300))
        await first.shutdown()
        second = await start_watcher()
        head = await chain.web3.eth.block_number
        await second.settled(head)
        assert len(bot_api.messages) == 1
        await second.shutdown()
        await chain.actions.set_price("WETH", 1100)  # while nobody watches: 1100 * 0.85 / 1000 = 0.935
        third = await start_watcher()
        await third.settled(await chain.web3.eth.block_number)
        assert kinds(bot_api) == ["CRITICAL", "LIQUIDATABLE"]
        assert exposed in bot_api.messages[1].text


class TestIndex:
    async def test_exposure_discovered_on_chain(self, chain: Chain, start_watcher: StartWatcher) -> None:
        """At start the index knows each account's reserves, so the WETH feed maps to the WETH borrower only."""
        exposed, unexposed = await open_standard_positions(chain)
        running = await start_watcher()
        engine = running.watcher.engine
        assert engine is not None
        weth_feed = chain.devnet.aave_v3.reserves["WETH"].aggregator.lower()
        usdc_feed = chain.devnet.aave_v3.reserves["USDC"].aggregator.lower()  # behind a proxy: followed
        assert engine.index.targets_priced_by(weth_feed) == {Target(protocol="neverland", account=exposed)}
        assert engine.index.targets_priced_by(usdc_feed) == {
            Target(protocol="neverland", account=exposed),
            Target(protocol="neverland", account=unexposed),
        }


class TestBlockCompleteness:
    async def test_real_header_blooms_tell_relevant_blocks(self, chain: Chain, start_watcher: StartWatcher) -> None:
        """Anvil's header bloom flags the block of a price update as relevant and an empty block as quiet."""
        await open_standard_positions(chain)
        running = await start_watcher()
        engine = running.watcher.engine
        assert engine is not None
        rpc = Rpc([chain.node.http_url])
        try:
            update = await rpc.head(await chain.actions.set_price("WETH", 1900))
            await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            empty = await rpc.head()
        finally:
            await rpc.close()
        assert engine.log_filter().may_match_block(update)
        assert not engine.log_filter().may_match_block(empty)


class TestInterestDrift:
    async def test_a_year_of_interest_alone_crosses_warn(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """With no transaction at all, a year of accrued interest takes a borrower from OK to WARN and it is told."""
        borrower = chain.accounts[0]
        await chain.actions.open_position(borrower, supply={"WETH": 1}, borrow={"USDC": 1130})  # health 1.504; ~2% a year on USDC here
        running = await start_watcher(refresh_every_blocks=1)
        assert bot_api.messages == []
        block = await chain.actions.advance_time(365 * 24 * 3600)
        await running.settled(block)
        (message,) = bot_api.messages
        assert message.text.split()[1] == "WARN" and borrower in message.text
        health, at = health_and_block(message.text)
        assert health == await health_at(chain, borrower, at) and health < Decimal("1.5")


class TestReorg:
    async def test_reorg_while_disconnected_is_noticed(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """If the last processed blocks are replaced around a dropped socket, the replacement is noticed and replayed."""
        await open_standard_positions(chain)
        running = await start_watcher()
        for _ in range(3):  # blocks the reorg can replace without undoing the positions
            await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        await running.settled(processed := await chain.web3.eth.block_number)
        with capture_logs() as logs:
            # The replacement blocks carry a transfer: empty ones with the same timestamps would hash the same.
            transfer = {"from": chain.accounts[5], "to": chain.accounts[6], "value": "0x1"}
            reorged = await chain.web3.provider.make_request("anvil_reorg", [2, [[transfer, 0]]])  # type: ignore[arg-type]
            assert "error" not in reorged, reorged
            await proxy.drop_websockets()
            block = await chain.actions.set_price("WETH", 1300)
            await running.settled(block)
        # Noticed by the engine from the replaced heads (the cursor goes back to the common ancestor), or, when no
        # head of the new branch came before the drop, by the listener's check of the last processed block.
        by_listener = [e for e in logs if e["event"] == "listener.reorg_detected"]
        by_engine = [e for e in logs if e["event"] == "recompute.blocks_replaced"]
        assert by_engine or by_listener
        if by_listener:
            assert by_listener[0]["block"] == processed and by_listener[0]["replay_from"] < processed
        else:
            assert by_engine[0]["ancestor"] == processed - 2
        assert kinds(bot_api) == ["CRITICAL"]
