"""Chaos on the WebSocket: connections cut every 2 s, a dead primary, malformed and oversized frames. Each scenario
injects its fault through the loopback proxy, stops by itself, and checks that every alert arrives exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
import structlog
from structlog.testing import capture_logs

from chainwatch.alerts.state import Thresholds, level_of
from chainwatch.devnet.actions import Position
from chainwatch.listeners.websocket import MAX_FRAME_BYTES, ChainListener
from chainwatch.model import Level
from tests.fork.conftest import DEADLINE, Chain, Running, StartWatcher, kinds
from tests.fork.test_spine import health_at, open_standard_positions
from tests.support.botapi import BotApiServer
from tests.support.rpcproxy import RpcProxy, running_proxy

THRESHOLDS = Thresholds(warn=1.5, critical=1.2)
# Durations are recorded for whoever reads the test output; no test asserts on them.
report = structlog.get_logger("chaos")


async def until(condition: Callable[[], bool], what: str, running: Running | None = None) -> None:
    """Waits (polling, with a deadline) for `condition`; fails naming `what`, or at once if the service died."""
    async with asyncio.timeout(DEADLINE):
        while not condition():
            if running is not None and running.task.done():
                running.task.result()
                raise AssertionError(f"the watcher stopped while waiting for {what}")
            await asyncio.sleep(0.05)


def listener_of(running: Running) -> ChainListener:
    assert running.watcher.listener is not None
    return running.watcher.listener


@pytest.fixture
async def primary(chain: Chain) -> AsyncIterator[RpcProxy]:
    """A second proxy to the same node, to stand as ws_urls[0] (the `proxy` fixture is the fallback and HTTP)."""
    async with running_proxy(chain.node.http_url, chain.node.ws_url) as running:
        yield running


class TestConnectionsCut:
    async def test_cut_every_two_seconds_during_a_crash_loses_and_repeats_no_alert(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """20 WETH borrowers, WETH down in 6 steps, each step right after a cut: each position gets exactly the
        alerts its Pool health at the step blocks calls for, once each."""
        borrowers = await chain.actions.fund_accounts(20, label="chaos-cut")
        # 1 WETH against 900..1090 USDC: health 1.89..1.56 at $2,000, so nothing alerts before the crash.
        await chain.actions.open_positions([Position(account=b, supply={"WETH": Decimal(1)}, borrow={"USDC": Decimal(900 + 10 * i)})
                                            for i, b in enumerate(borrowers)])  # fmt: skip
        running = await start_watcher(watched=borrowers)
        listener = listener_of(running)
        expected: dict[str, list[str]] = {b: [] for b in borrowers}
        proxy.start_cutting_websockets(2.0, times=30)
        started = time.monotonic()
        with capture_logs() as logs:
            for price in (1800, 1600, 1450, 1300, 1150, 1050):
                cuts = proxy.websocket_cuts
                await until(lambda: proxy.websocket_cuts > cuts, "the next cut", running)
                block = await chain.actions.set_price("WETH", price)
                await running.settled(block)
                for borrower in borrowers:
                    level = level_of(float(await health_at(chain, borrower, block)), THRESHOLDS)
                    if level != Level.OK and level.name not in expected[borrower]:
                        expected[borrower].append(level.name)
        proxy.stop_cutting_websockets()
        report.info("chaos.crash_under_cuts", seconds=round(time.monotonic() - started, 2), cuts=proxy.websocket_cuts,
                    connections=listener.connections)  # fmt: skip
        assert proxy.websocket_cuts >= 6 and listener.connections > 6
        assert any(e["event"] == "listener.backfilled" for e in logs)
        received = {b: [m.text.split()[1] for m in bot_api.messages if b in m.text] for b in borrowers}
        assert received == expected
        assert sum(map(len, expected.values())) >= 40  # the crash crossed most positions' lines more than once


class TestPrimaryDown:
    async def test_alerts_come_through_the_fallback_and_chainwatch_returns_to_the_primary(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, primary: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """ws_urls[0] refuses: alerts arrive through ws_urls[1]; once [0] answers again, chainwatch goes back to it
        and alerts through it, with no block missed across the switch."""
        exposed, _ = await open_standard_positions(chain)
        primary.refuse_websockets = True
        with capture_logs() as logs:
            running = await start_watcher(ws_urls=[primary.ws_url, proxy.ws_url], chain_extra="primary_probe_seconds = 0.3")
            listener = listener_of(running)
            assert listener.endpoint == 1
            await running.settled(await chain.actions.set_price("WETH", 1700))  # WARN, through the fallback
            primary.refuse_websockets = False
            recovered = time.monotonic()
            await until(lambda: listener.endpoint == 0, "the switch back to ws_urls[0]", running)
            switched_after = round(time.monotonic() - recovered, 2)
            await running.settled(await chain.actions.set_price("WETH", 1300))  # CRITICAL, through the primary
        report.info("chaos.primary_down", seconds_from_recovery_to_switch=switched_after)
        assert kinds(bot_api) == ["WARN", "CRITICAL"] and all(exposed in m.text for m in bot_api.messages)
        assert primary.count("eth_subscribe") == 2 and primary.websocket_connections >= 2  # a probe, then the listener
        events = [e["event"] for e in logs]
        assert events.index("listener.failover") < events.index("listener.back_to_primary")
        after_switch = logs[events.index("listener.back_to_primary"):]
        subscribed = [e for e in after_switch if e["event"] == "listener.subscribed"]
        assert subscribed[0]["endpoint"] == "ws_urls[0]"
        assert any(e["event"] == "listener.backfilled" for e in after_switch)  # the switch backfilled: no block skipped
        (back,) = [e for e in logs if e["event"] == "listener.back_to_primary"]
        assert back["from_endpoint"] == "ws_urls[1]" and back["seconds_on_fallback"] is not None  # a duration, logged
        assert not any(e["event"] == "listener.disconnected" and e["endpoint"] == "ws_urls[1]" for e in logs)


class TestMalformedFrames:
    async def test_every_malformed_kind_is_skipped_and_the_next_move_alerts(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """One frame of each malformed kind between real ones: each logged and counted, no reconnect, and the next
        price move still alerts."""
        await open_standard_positions(chain)
        running = await start_watcher()
        listener = listener_of(running)
        connections = listener.connections
        with capture_logs() as logs:
            await running.settled(await chain.actions.set_price("WETH", 1700))
            for kind in RpcProxy.MALFORMED_KINDS:
                assert await proxy.send_malformed(kind) == 1
            await until(lambda: sum(listener.malformed.counts.values()) == 5, "the five frames to be read", running)
            await running.settled(await chain.actions.set_price("WETH", 1300))
        assert listener.malformed.counts == {"head": 1, "log": 2, "envelope": 1, "not_json": 1}
        logged = sorted(e["kind"] for e in logs if e["event"] == "listener.malformed_payload")
        assert logged == ["envelope", "head", "log", "log", "not_json"]  # the 1st and 2nd of a kind are logged
        assert listener.connections == connections and not running.task.done()
        assert kinds(bot_api) == ["WARN", "CRITICAL"]

    async def test_a_skipped_real_head_is_recovered_by_the_next(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """The head of the crash's block arrives with a short hash and is skipped: the next head fills the gap, the
        engine processes past the crash, and the alert comes."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        listener = listener_of(running)
        proxy.corrupt_next_heads = 1
        with capture_logs() as logs:
            block = await chain.actions.set_price("WETH", 1300)
            await until(lambda: listener.malformed.counts["head"] == 1, "the corrupted head", running)
            await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            await running.settled(block + 1)
        assert [(e["from_block"], e["to_block"]) for e in logs if e["event"] == "listener.gap_filled"] == [(block, block)]
        assert kinds(bot_api) == ["CRITICAL"] and exposed in bot_api.messages[0].text

    async def test_a_skipped_real_log_is_recovered_through_its_block(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """The crash's price log arrives without its blockHash and is skipped: its head's bloom still says the block
        holds a relevant log, the block's logs are fetched, and the alert comes without a reconnect."""
        exposed, _ = await open_standard_positions(chain)
        running = await start_watcher()
        listener = listener_of(running)
        connections = listener.connections
        proxy.corrupt_next_logs = 1
        block = await chain.actions.set_price("WETH", 1300)
        await running.settled(block)
        assert listener.malformed.counts == {"log": 1} and proxy.corrupt_next_logs == 0
        assert listener.connections == connections
        assert kinds(bot_api) == ["CRITICAL"] and exposed in bot_api.messages[0].text

    async def test_a_node_sending_only_garbage_counts_as_stalled(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """Malformed frames keep arriving but nothing usable does: after stall_seconds the connection is reopened."""
        await open_standard_positions(chain)
        running = await start_watcher(chain_extra="stall_seconds = 1.5")
        listener = listener_of(running)
        connections = listener.connections
        with capture_logs() as logs:
            for _ in range(400):  # bounded: 40 s of garbage at most, far past the deadline below
                if listener.connections > connections:
                    break
                await proxy.send_malformed("not_json")
                await asyncio.sleep(0.1)  # the garbage's pace, not a wait for a condition
            await until(lambda: listener.connections > connections, "the reopened connection", running)
        (stalled,) = [e for e in logs if e["event"] == "listener.disconnected"]
        assert "Stalled" in stalled["error"]
        await running.settled(await chain.actions.set_price("WETH", 1300))
        assert kinds(bot_api) == ["CRITICAL"]

    async def test_an_oversized_frame_costs_a_reconnect_with_backfill(
        self, chain: Chain, start_watcher: StartWatcher, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """A frame over MAX_FRAME_BYTES closes the connection (1009); chainwatch reconnects with backfill, and the
        crash mined meanwhile still alerts, once."""
        await open_standard_positions(chain)
        running = await start_watcher()
        listener = listener_of(running)
        connections = listener.connections
        with capture_logs() as logs:
            assert await proxy.send_oversized(MAX_FRAME_BYTES + 1) == 1
            block = await chain.actions.set_price("WETH", 1300)
            await running.settled(block)
            await until(lambda: listener.connections > connections, "the reconnect", running)
        (dropped,) = [e for e in logs if e["event"] == "listener.disconnected"]
        assert "1009" in dropped["error"]
        assert kinds(bot_api) == ["CRITICAL"]
