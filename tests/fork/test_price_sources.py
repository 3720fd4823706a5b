"""Price moves announced the way real oracles announce them (composite, RedStone, Pyth, a switched Chainlink
proxy) reach exactly the Aave positions they move, within the update's block."""

from __future__ import annotations

from structlog.testing import capture_logs

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


def only_message_block(bot_api: BotApiServer) -> int:
    (message,) = bot_api.messages
    return health_and_block(message.text)[1]


class TestCompositeRatioFeed:
    async def test_ratio_feed_update_alerts_in_its_block(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """sWETH's exchange rate falling (0.75 WETH, $1,500) sends CRITICAL at the ratio update's block."""
        holder = chain.accounts[0]
        await chain.actions.open_position(holder, supply={"sWETH": 1}, borrow={"USDC": 1000})  # 2200 * 0.75 / 1000
        running = await start_watcher(watched=[holder])
        block = await chain.actions.set_ratio("0.75")  # 1500 * 0.75 / 1000 = 1.125
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL"] and only_message_block(bot_api) == block

    async def test_base_feed_update_moves_the_composite_too(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A WETH crash moves sWETH through the ratio aggregator's base feed: CRITICAL at that block."""
        holder = chain.accounts[0]
        await chain.actions.open_position(holder, supply={"sWETH": 1}, borrow={"USDC": 1000})
        running = await start_watcher(watched=[holder])
        block = await chain.actions.set_price("WETH", 1400)  # 1.1 * 1400 * 0.75 / 1000 = 1.155
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL"] and only_message_block(bot_api) == block


class TestMultiFeedContracts:
    async def test_redstone_value_update_alerts_only_through_its_own_feed_id(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """UNI's ValueUpdate on the shared adapter re-reads no LINK holder; LINK's own sends CRITICAL in its block."""
        holder = chain.accounts[0]
        await chain.actions.open_position(holder, supply={"LINK": 100}, borrow={"USDC": 600})  # 1500 * 0.75 / 600
        running = await start_watcher(watched=[holder])
        with capture_logs() as logs:
            other = await chain.actions.set_redstone_price("UNI", 1)
            await running.settled(other)
        assert positions_read_at(logs, other) == [] and bot_api.messages == []
        block = await chain.actions.set_redstone_price("LINK", 9)  # 900 * 0.75 / 600 = 1.125
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL"] and only_message_block(bot_api) == block

    async def test_pyth_price_feed_update_alerts_in_its_block(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer, proxy: RpcProxy
    ) -> None:
        """SOL's PriceFeedUpdate on the Pyth contract sends CRITICAL at its block; quiet blocks still cost nothing."""
        holder = chain.accounts[0]
        await chain.actions.open_position(holder, supply={"SOL": 10}, borrow={"USDC": 600})  # 1500 * 0.75 / 600
        running = await start_watcher(watched=[holder])
        await assert_quiet_blocks_cost_no_eth_call(chain, running, proxy)
        block = await chain.actions.set_pyth_price("SOL", 90)  # 900 * 0.75 / 600 = 1.125
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL"] and only_message_block(bot_api) == block

    async def test_feed_of_an_asset_not_held_reads_nothing(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """A WBTC move does not re-read an account holding only SOL and USDC debt."""
        holder = chain.accounts[0]
        await chain.actions.open_position(holder, supply={"SOL": 10}, borrow={"USDC": 600})
        running = await start_watcher(watched=[holder])
        with capture_logs() as logs:
            block = await chain.actions.set_price("WBTC", 30000)
            await running.settled(block)
        assert positions_read_at(logs, block) == [] and bot_api.messages == []


class TestProxySwitch:
    async def test_new_aggregator_is_followed_and_the_old_one_dropped(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """After the USDC proxy confirms a new aggregator, the old one's update reads nothing; the new one's alerts."""
        holder = chain.accounts[0]
        await chain.actions.open_position(holder, supply={"WETH": 1}, borrow={"USDC": 1000})  # 2000 * 0.85 / 1000
        running = await start_watcher(watched=[holder])
        new_aggregator, switched = await chain.actions.switch_aggregator("USDC")
        await running.settled(switched)
        with capture_logs() as logs:
            old = await chain.actions.set_price("USDC", 2)
            await running.settled(old)
        assert positions_read_at(logs, old) == [] and bot_api.messages == []
        block = await chain.actions.set_price("USDC", "1.5", aggregator=new_aggregator)  # 1700 / 1500 = 1.133
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL"] and only_message_block(bot_api) == block
