"""Operating chainwatch: Prometheus metrics and the health endpoint of a running service on Anvil."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp

from tests.fork.conftest import TOKEN, Chain, Running, StartWatcher, kinds
from tests.fork.test_spine import open_standard_positions
from tests.support.botapi import BotApiServer
from tests.support.rpcproxy import RpcProxy

DEADLINE = 20.0


def metrics_table(**limits: object) -> str:
    lines = "\n".join(f"{key} = {value}" for key, value in limits.items())
    return f'[metrics]\nlisten = "127.0.0.1:0"\n{lines}\n'


async def get(running: Running, path: str) -> tuple[int, str]:
    assert running.watcher.metrics_address is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{running.watcher.metrics_address}{path}") as response:
            return response.status, await response.text()


async def health_until(running: Running, status: int, says: str = "") -> str:
    """Polls /health until it answers `status` (and its body says `says`), failing after a deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        code, body = await get(running, "/health")
        if code == status and says in body:
            return body
        assert time.monotonic() < deadline, f"/health stayed {code}: {body}"
        await asyncio.sleep(0.05)  # the poll interval of this condition wait, not a synchronisation


class TestMetrics:
    async def test_metrics_page_names_the_service_state_without_ids_or_secrets(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """After an alert: heads, watched positions, latencies, sends are there; no address, chat id or token."""
        await open_standard_positions(chain)
        running = await start_watcher(extra=metrics_table())
        block = await chain.actions.set_price("WETH", 1300)
        await running.settled(block)
        assert kinds(bot_api) == ["CRITICAL"]
        status, text = await get(running, "/metrics")
        assert status == 200
        assert re.search(rf'^chainwatch_head_block{{stage="processed"}} {block}\.0$', text, re.M)
        assert 'chainwatch_positions_watched{protocol="neverland"} 7.0' in text
        assert re.search(r"^chainwatch_block_to_alert_queued_seconds_count [1-9]", text, re.M)
        assert re.search(r"^chainwatch_block_to_alert_sent_seconds_count [1-9]", text, re.M)
        assert re.search(r'^chainwatch_telegram_sends_total{outcome="sent"} [1-9]', text, re.M)
        assert "0x" not in text and TOKEN not in text and "4242" not in text


class TestHealth:
    async def test_healthy_while_heads_arrive(self, chain: Chain, start_watcher: StartWatcher) -> None:
        """Right after start, with a head just seen, /health is 200 and says ok."""
        running = await start_watcher(extra=metrics_table())
        await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert '"status": "ok"' in await health_until(running, 200)

    async def test_unhealthy_when_no_head_comes(self, chain: Chain, start_watcher: StartWatcher) -> None:
        """No block mined for longer than stall_seconds: 503 naming the missing head."""
        running = await start_watcher(extra=metrics_table(stall_seconds=0.3))
        await health_until(running, 503, "no new head")

    async def test_unhealthy_when_processing_falls_behind(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy
    ) -> None:
        """Reads failing while blocks keep coming: processing falls more than max_lag_blocks behind, 503."""
        await open_standard_positions(chain)
        running = await start_watcher(extra=metrics_table(max_lag_blocks=2))
        proxy.fail_methods.add("eth_call")
        await chain.actions.set_price("WETH", 1300)
        for _ in range(4):
            await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        await health_until(running, 503, "blocks behind the head")
        proxy.fail_methods.clear()
        await health_until(running, 200)

    async def test_unhealthy_when_the_outbox_does_not_drain(
        self, chain: Chain, start_watcher: StartWatcher, bot_api: BotApiServer
    ) -> None:
        """Telegram refusing with a long retry_after keeps the alert waiting past the limit: 503."""
        await open_standard_positions(chain)
        running = await start_watcher(extra=metrics_table(max_outbox_age_seconds=0.3))
        bot_api.fail_next(5, status=429, retry_after=60)
        await chain.actions.set_price("WETH", 1300)
        await health_until(running, 503, "oldest unsent message")
