"""Chaos for the HTTP RPC: a provider answering a seeded mix of 429s, 503s and garbage, and a dead primary.

Each scenario runs on loopback only (Anvil, the fault-injecting proxies, the local Bot API) and ends by itself.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from structlog.testing import capture_logs

from chainwatch.app import Watcher
from chainwatch.config import load_config
from chainwatch.rpc import Rpc, RpcError
from tests.fork.conftest import Chain, _unless_dead, kinds, write_config
from tests.fork.test_spine import open_standard_positions
from tests.support.botapi import BotApiServer
from tests.support.rpcproxy import HttpFaults, RpcProxy, running_proxy

# Faults make every step slower (each 429 rests the endpoint a second): a generous bound, never a timing claim.
CHAOS_DEADLINE = 120.0
BUDGET = 10  # requests/s per endpoint, the default
PRICE_PATH = (1700, 1300, 1100, 2000)  # health of the WETH borrower: 1.445, 1.105, 0.935, 1.70
EXPECTED_KINDS = ["WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"]


@asynccontextmanager
async def watching(
    tmp_path: Path, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, http_urls: str
) -> AsyncIterator[Watcher]:
    """chainwatch serving in this loop with `http_urls` (TOML), stopped at the end; waits until it is subscribed."""
    config = write_config(tmp_path / "chaos.toml", chain, proxy, bot_api, http_urls=http_urls)
    watcher = Watcher(load_config(config))
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.serve(stop))
    try:
        async with asyncio.timeout(CHAOS_DEADLINE):
            await _unless_dead(watcher.ready.wait(), task)
        yield watcher
        assert not task.done(), "the watcher stopped during the scenario"
    finally:
        stop.set()
        async with asyncio.timeout(CHAOS_DEADLINE):
            await task


async def walk_the_price_path(chain: Chain, watcher: Watcher) -> None:
    """Moves WETH along PRICE_PATH, waiting after each move until its block is processed and its alert has left."""
    for price in PRICE_PATH:
        block = await chain.actions.set_price("WETH", price)
        async with asyncio.timeout(CHAOS_DEADLINE):
            await watcher.wait_settled(block)


def outcomes_counted(endpoint: str) -> dict[str, float]:
    """chainwatch's own count of attempts at `endpoint` by outcome, from the Prometheus registry (process-wide:
    compare before and after)."""
    counts: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "chainwatch_rpc_requests":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["endpoint"] == endpoint:
                    counts[sample.labels["outcome"]] = counts.get(sample.labels["outcome"], 0.0) + sample.value
    return counts


def requests_counted(endpoint: str) -> float:
    return sum(outcomes_counted(endpoint).values())


class TestFlakyProvider:
    async def test_every_alert_exactly_once_within_budget(
        self, tmp_path: Path, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer
    ) -> None:
        """30% 429 (Retry-After 1), 10% 503, 10% garbage: chainwatch starts, stays up, alerts each step once, no storm."""
        await open_standard_positions(chain)
        proxy.inject_http_faults(HttpFaults(too_many_requests=0.3, unavailable=0.1, not_json_rpc=0.1, seed=7))
        outcomes_before = outcomes_counted("http_urls[0]")
        started = time.monotonic()
        async with watching(tmp_path, chain, proxy, bot_api, f'[{{ url = "{proxy.http_url}" }}]') as watcher:
            await walk_the_price_path(chain, watcher)
        elapsed = time.monotonic() - started
        assert kinds(bot_api) == EXPECTED_KINDS
        # The faults were met and survived, not dodged: each kind was answered at least once.
        assert proxy.http_answers["429"] and proxy.http_answers["503"] and proxy.http_answers["not_json_rpc"]
        outcomes = outcomes_counted("http_urls[0]")
        assert outcomes.get("429", 0) > outcomes_before.get("429", 0)
        assert outcomes.get("malformed", 0) > outcomes_before.get("malformed", 0)
        # No retry storm: the budget's burst plus its rate over the scenario, with a little room.
        bound = 1.5 * BUDGET * (elapsed + 1)
        print(f"flaky provider: {proxy.http_requests} HTTP requests in {elapsed:.1f} s (bound {bound:.0f}), "
              f"answers {dict(proxy.http_answers)}")  # fmt: skip
        assert proxy.http_requests <= bound


class TestDeadPrimary:
    @pytest.mark.parametrize("mode", ["refuse", "hang"])
    async def test_alerts_keep_coming_through_the_second_endpoint(
        self, tmp_path: Path, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, mode: str
    ) -> None:
        """The primary HTTP endpoint refuses connections (or never answers): every alert arrives via the second,
        and the primary costs a few attempts, not one per request."""
        await open_standard_positions(chain)
        async with running_proxy(chain.node.http_url, chain.node.ws_url) as primary:
            await primary.go_dead(mode)  # type: ignore[arg-type]
            before = requests_counted("http_urls[0]")
            started = time.monotonic()
            http_urls = f'[{{ url = "{primary.http_url}", timeout_seconds = 1 }}, "{proxy.http_url}"]'
            async with watching(tmp_path, chain, proxy, bot_api, http_urls) as watcher:
                await walk_the_price_path(chain, watcher)
            elapsed = time.monotonic() - started
            attempts_at_primary = requests_counted("http_urls[0]") - before
        assert kinds(bot_api) == EXPECTED_KINDS
        second = outcomes_counted("http_urls[1]")
        print(f"dead primary ({mode}): {elapsed:.1f} s for the whole path; {attempts_at_primary:.0f} attempts at the "
              f"primary, {proxy.http_requests} requests at the second")  # fmt: skip
        assert second.get("ok", 0) > 0
        # One attempt per rest: the rests double from 0.5 s (to a 30 s cap), so a scenario of a minute or two costs
        # about ten, however many requests went to the second meanwhile.
        assert 1 <= attempts_at_primary <= 12
        assert attempts_at_primary < proxy.http_requests / 4
        if mode == "hang":
            assert primary.http_answers["hung"] == attempts_at_primary  # every attempt the proxy saw, chainwatch counted


class TestFailover:
    @pytest.mark.parametrize("retry_after", ["30", "date"])
    async def test_retry_after_rests_only_that_endpoint(self, chain: Chain, proxy: RpcProxy, retry_after: str) -> None:
        """A 429 with Retry-After (seconds or an HTTP date) parks the primary; requests meanwhile go to the second."""
        header = formatdate(time.time() + 30, usegmt=True) if retry_after == "date" else retry_after
        async with running_proxy(chain.node.http_url, chain.node.ws_url) as primary:
            primary.inject_http_faults(HttpFaults(too_many_requests=1.0, retry_after=header))
            rpc = Rpc([primary.http_url, proxy.http_url])
            try:
                numbers = [await rpc.block_number() for _ in range(5)]
            finally:
                await rpc.close()
        assert numbers == [numbers[0]] * 5 and numbers[0] > 0
        assert primary.http_requests == 1  # asked once; its Retry-After outlasts the five requests
        assert proxy.count("eth_blockNumber") == 5

    async def test_the_nodes_own_error_is_not_asked_elsewhere(self, chain: Chain, proxy: RpcProxy) -> None:
        """A JSON-RPC error the node answered (here: any eth_call) is final: raised as answered, second never asked."""
        async with running_proxy(chain.node.http_url, chain.node.ws_url) as primary:
            primary.fail_methods = {"eth_call"}
            rpc = Rpc([primary.http_url, proxy.http_url])
            try:
                with pytest.raises(RpcError) as raised:
                    await rpc.call(chain.devnet.multicall3, b"", await rpc.block_number())
                assert await rpc.block_number() > 0  # the primary is not rested for answering
            finally:
                await rpc.close()
        assert raised.value.answered and "http_urls[0]" in str(raised.value)
        assert primary.count("eth_call") == 1 and proxy.count("eth_call") == 0
        assert primary.count("eth_blockNumber") == 2 and proxy.count("eth_blockNumber") == 0

    async def test_a_failing_endpoint_is_named_by_index_never_by_url(self, chain: Chain, proxy: RpcProxy) -> None:
        """An endpoint whose URL holds a key fails (404, then refused): no log, error or metric shows the key."""
        key = "v2/SECRETKEY0123456789"
        async with running_proxy(chain.node.http_url, chain.node.ws_url) as primary:
            only_keyed = Rpc([f"{primary.http_url}{key}"], max_attempts=2)
            both = Rpc([f"{primary.http_url}{key}", proxy.http_url])
            with capture_logs() as logs:
                try:
                    with pytest.raises(RpcError) as raised:
                        await only_keyed.block_number()  # the proxy answers only "/": HTTP 404 for the keyed path
                    await primary.go_dead("refuse")
                    assert await both.block_number() > 0  # failed over to the second
                finally:
                    await only_keyed.close()
                    await both.close()
        assert "http_urls[0]: HTTP 404" in str(raised.value)
        told = str(raised.value) + repr(logs) + generate_latest(REGISTRY).decode()
        assert "SECRETKEY" not in told and primary.http_url not in told
        assert any(e["event"] == "rpc.endpoint_resting" and e["endpoint"] == "http_urls[0]" for e in logs)
