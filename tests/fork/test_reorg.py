"""Replaced blocks on Anvil (`anvil_reorg`): the alert state follows the canonical chain, whatever the depth."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from chainwatch.abi import calldata
from chainwatch.devnet.common import FEED_DECIMALS
from tests.fork.conftest import Chain, Running, StartWatcher, health_and_block, kinds
from tests.fork.test_spine import health_at, open_standard_positions
from tests.support.botapi import BotApiServer


async def rpc(chain: Chain, method: str, *params: Any) -> Any:
    answer = await chain.web3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in answer, answer
    return answer["result"]


async def price_tx(chain: Chain, symbol: str, usd: int) -> dict[str, str]:
    """The transaction DevnetActions.set_price sends, for a replacement branch to carry."""
    admin = (await chain.actions.anvil_accounts())[0]
    aggregator = chain.devnet.aave_v3.reserves[symbol].aggregator
    data = calldata("updateAnswer(int256)", usd * 10**FEED_DECIMALS)
    return {"from": admin, "to": aggregator, "data": "0x" + data.hex(), "gas": hex(200_000)}


def transfer_tx(chain: Chain) -> dict[str, str]:
    # Replacement blocks need a transaction of their own: empty ones with the same timestamps would hash the same.
    return {"from": chain.accounts[5], "to": chain.accounts[6], "value": "0x1"}


async def replace_blocks(chain: Chain, running: Running, depth: int, txs: list[dict[str, str]]) -> int:
    """Replaces the last `depth` blocks with a branch carrying `txs` in its first block, mines one more block on
    top (a head chainwatch must see), and waits until that head is processed; returns its number."""
    await rpc(chain, "anvil_reorg", depth, [[tx, 0] for tx in txs])
    await rpc(chain, "evm_mine")
    tip = int(await rpc(chain, "eth_blockNumber"), 16)
    await running.settled(tip)
    return tip


async def started(chain: Chain, start_watcher: StartWatcher) -> tuple[str, Running]:
    exposed, _ = await open_standard_positions(chain)
    running = await start_watcher()
    for _ in range(6):  # blocks a reorg can replace without undoing the positions themselves
        await rpc(chain, "evm_mine")
    await running.settled(int(await rpc(chain, "eth_blockNumber"), 16))
    return exposed, running


class TestReplacedAlerts:
    @pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
    async def test_an_alert_whose_block_was_replaced_is_retracted_with_the_canonical_health(
        self, depth: int, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """The crash that alerted is undone by a reorg of `depth` blocks: the chat hears it no longer holds,
        with the health factor the Pool reports on the canonical chain."""
        exposed, running = await started(chain, start_watcher)
        crash = await chain.actions.set_price("WETH", 1300)
        # The crash block is processed on its own (on a loaded machine the next blocks could otherwise arrive first
        # and the alert be read at one of them): the alert's block is then `crash`, as the retraction must say.
        await running.settled(crash)
        for _ in range(depth - 1):
            await rpc(chain, "evm_mine")
        await running.settled(crash + depth - 1)
        assert kinds(bot_api) == ["CRITICAL"]
        with capture_logs() as logs:
            tip = await replace_blocks(chain, running, depth, [transfer_tx(chain)])
        assert kinds(bot_api) == ["CRITICAL", "REPLACED"]
        retraction = bot_api.messages[-1].text
        assert f"The block behind the previous alert ({crash}) was replaced" in retraction
        health, block = health_and_block(retraction)
        assert health == await health_at(chain, exposed, block) and block <= tip
        (replaced,) = [e for e in logs if e["event"] == "recompute.blocks_replaced"]
        assert replaced["ancestor"] == crash - 1
        assert running.watcher.store is not None
        levels = await running.watcher.store.levels()
        assert all(stored.block <= tip for stored in levels.values())
        assert {stored.level.name for key, stored in levels.items() if key.key.account == exposed} == {"OK"}

    async def test_a_worse_level_on_the_new_branch_alerts_as_usual(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """The replacement branch crashes the price further: LIQUIDATABLE, with the canonical health factor."""
        exposed, running = await started(chain, start_watcher)
        await running.settled(await chain.actions.set_price("WETH", 1300))
        await replace_blocks(chain, running, 1, [await price_tx(chain, "WETH", 1100)])
        assert kinds(bot_api) == ["CRITICAL", "LIQUIDATABLE"]
        health, block = health_and_block(bot_api.messages[-1].text)
        assert health == await health_at(chain, exposed, block)

    async def test_a_replacement_that_moves_the_price_the_same_way_says_nothing(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """The same crash, re-mined on the new branch: the level holds, nothing is sent, and it was re-read."""
        _, running = await started(chain, start_watcher)
        await running.settled(await chain.actions.set_price("WETH", 1300))
        with capture_logs() as logs:
            await replace_blocks(chain, running, 1, [await price_tx(chain, "WETH", 1290)])
        assert kinds(bot_api) == ["CRITICAL"]
        assert [e["positions"] for e in logs if e["event"] == "recompute.blocks_replaced"] == [1]

    async def test_a_replaced_quiet_block_costs_a_reread_of_nothing_and_no_message(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Replacing blocks that touched no position re-reads none of them and sends nothing."""
        _, running = await started(chain, start_watcher)
        with capture_logs() as logs:
            await replace_blocks(chain, running, 3, [transfer_tx(chain)])
        assert bot_api.messages == []
        assert [e["positions"] for e in logs if e["event"] == "recompute.blocks_replaced"] == [0]
