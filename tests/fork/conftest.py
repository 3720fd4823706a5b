"""Fixtures for tests against a real Anvil: one node and devnet per session, reverted to a snapshot per test.

chainwatch runs as in production (`Watcher.serve`), reading through a counting JSON-RPC proxy and sending
to a local Bot API server over HTTP; its state is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3

from chainwatch.app import Watcher
from chainwatch.config import load_config
from chainwatch.devnet.actions import DevnetActions
from chainwatch.devnet.anvil import AnvilNode, running_anvil
from chainwatch.devnet.deploy import Devnet, deploy_devnet
from tests.support.botapi import BotApiServer, SentMessage, running_bot_api
from tests.support.rpcproxy import RpcProxy, running_proxy

TOKEN = "123456:TEST-token-never-logged"
CHAT = 4242
DEADLINE = 20.0
# Requests/s to the proxy in front of a local Anvil: no provider's limit applies on loopback, and tests that read
# block by block would otherwise see heads coalesced while reads wait for the public endpoints' budget.
LOOPBACK_BUDGET = 1000


@dataclass
class Chain:
    node: AnvilNode
    devnet: Devnet
    actions: DevnetActions
    accounts: list[str]
    web3: AsyncWeb3
    snapshot: str = ""


@pytest.fixture(scope="session")
async def session_chain() -> AsyncIterator[Chain]:
    async with running_anvil() as node:
        devnet = await deploy_devnet(node.http_url)
        async with DevnetActions(node.http_url, devnet) as actions:
            web3 = AsyncWeb3(AsyncHTTPProvider(node.http_url))
            accounts = (await actions.anvil_accounts())[1:8]
            chain = Chain(node=node, devnet=devnet, actions=actions, accounts=accounts, web3=web3)
            chain.snapshot = await web3.provider.make_request("evm_snapshot", [])  # type: ignore[arg-type]
            chain.snapshot = chain.snapshot["result"]  # type: ignore[index]
            yield chain
            await web3.provider.disconnect()


@pytest.fixture
async def chain(session_chain: Chain) -> AsyncIterator[Chain]:
    """The deployed devnet, as it was right after deployment (Anvil snapshots are single-use: take a new one)."""
    yield session_chain
    provider = session_chain.web3.provider
    reverted = await provider.make_request("evm_revert", [session_chain.snapshot])  # type: ignore[arg-type]
    assert reverted["result"] is True
    session_chain.snapshot = (await provider.make_request("evm_snapshot", []))["result"]  # type: ignore[arg-type]


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    async with running_bot_api(TOKEN) as server:
        yield server


@pytest.fixture
async def proxy(chain: Chain) -> AsyncIterator[RpcProxy]:
    async with running_proxy(chain.node.http_url, chain.node.ws_url) as running:
        yield running


@dataclass
class Running:
    """A chainwatch service running in the test's event loop."""

    watcher: Watcher
    task: asyncio.Task[None]
    stop: asyncio.Event
    config_path: Path
    messages: list[SentMessage] = field(default_factory=list)

    async def settled(self, block: int) -> None:
        async with asyncio.timeout(DEADLINE):
            await _unless_dead(self.watcher.wait_settled(block), self.task)

    async def shutdown(self) -> None:
        self.stop.set()
        async with asyncio.timeout(DEADLINE):
            await self.task


StartWatcher = Callable[..., Awaitable[Running]]


def aave_protocol(chain: Chain) -> str:
    """The `[[protocols]]` entry for the devnet's Aave v3 market."""
    return f"""
[[protocols]]
kind = "aave_v3"
name = "neverland"
pool_addresses_provider = "{chain.devnet.aave_v3.pool_addresses_provider}"
"""


def write_config(
    path: Path, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, *, refresh_every_blocks: int = 10_000,
    warn: float = 1.5, critical: float = 1.2, protocols: str | None = None, watched: list[str] | None = None,
    refresh_bands: str = "[]", bot: str = "", messages_per_second: float = 25.0, extra: str = "",
    storage_url: str | None = None,
    ws_urls: list[str] | None = None, chain_extra: str = "",
    http_urls: str | None = None, refresh_extra: str = "",
) -> Path:  # fmt: skip
    """A config for chainwatch on the devnet: `protocols` is TOML for [[protocols]] (default: the Aave market),
    `watched` the accounts the operator watches (default: all test accounts; [] for none), each labelled
    "user <index>". Re-reads on a schedule happen every `refresh_every_blocks` blocks (and per `refresh_bands`,
    TOML, none by default). `bot` is the body of the [bot] table; `extra` more tables (TOML); `ws_urls` replaces the
    proxy's WebSocket URL (e.g. two proxies, primary first); `chain_extra` adds keys to [chain] (TOML); `http_urls`
    the TOML value of [chain] http_urls (default: the proxy alone, at LOOPBACK_BUDGET); `refresh_extra` adds keys to
    [refresh] (TOML)."""
    watches = "\n".join(
        f'[[watch]]\naddress = "{account}"\nlabel = "user {i}"\n'
        for i, account in enumerate(chain.accounts if watched is None else watched)
    )
    path.write_text(f"""
[chain]
chain_id = {chain.devnet.chain_id}
ws_urls = {json.dumps(ws_urls or [proxy.ws_url])}
http_urls = {http_urls if http_urls is not None else f'[{{ url = "{proxy.http_url}", requests_per_second = {LOOPBACK_BUDGET} }}]'}
multicall3 = "{chain.devnet.multicall3}"
max_log_range = 7
{chain_extra}

[refresh]
every_blocks = {refresh_every_blocks}
bands = {refresh_bands}
{refresh_extra}

[telegram]
token = "{TOKEN}"
api_base = "{bot_api.base_url}"
default_chat_id = {CHAT}
per_chat_interval = 0.05
messages_per_second = {messages_per_second}

[storage]
path = "{path.parent / 'chainwatch.db'}"
{f'url = "{storage_url}"' if storage_url else ""}

[bot]
{bot}

[alerts]
warn = {warn}
critical = {critical}

{extra}

{protocols if protocols is not None else aave_protocol(chain)}

{watches}
""")
    return path


@pytest.fixture
async def start_watcher(
    tmp_path: Path, chain: Chain, proxy: RpcProxy, bot_api: BotApiServer
) -> AsyncIterator[StartWatcher]:
    started: list[Running] = []

    async def start(**overrides: object) -> Running:
        config_path = write_config(tmp_path / "chainwatch.toml", chain, proxy, bot_api, **overrides)  # type: ignore[arg-type]
        watcher = Watcher(load_config(config_path))
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.serve(stop))
        running = Running(watcher=watcher, task=task, stop=stop, config_path=config_path)
        started.append(running)
        async with asyncio.timeout(DEADLINE):
            await _unless_dead(watcher.ready.wait(), task)
        return running

    yield start
    for running in started:
        if not running.task.done():
            await running.shutdown()


async def _unless_dead(condition: Awaitable[object], task: asyncio.Task[None]) -> None:
    """Awaits `condition`; if the service task ends first, its exception (or its early end) fails the test."""
    waiter = asyncio.ensure_future(condition)
    done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        waiter.result()
        return
    waiter.cancel()
    task.result()
    raise AssertionError("the watcher stopped while the test waited on it")


async def assert_quiet_blocks_cost_no_eth_call(chain: Chain, running: Running, proxy: RpcProxy) -> None:
    """Mines empty blocks and an unrelated transfer; chainwatch must process them without one eth_call."""
    before = proxy.count("eth_call")
    assert before > 0  # the start-up read went through the proxy, so the counter sees chainwatch's reads
    for _ in range(5):
        await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    transfer = await chain.web3.eth.send_transaction({"from": chain.accounts[5], "to": chain.accounts[6], "value": 10**18})
    receipt = await chain.web3.eth.wait_for_transaction_receipt(transfer)
    await running.settled(receipt["blockNumber"])
    assert proxy.count("eth_call") == before


def kinds(bot_api: BotApiServer) -> list[str]:
    """The state word of every message the Bot API received, in order (WARN, CRITICAL, ...)."""
    return [message.text.split()[1] for message in bot_api.messages]


def positions_read_at(logs: list[dict[str, object]], block: int) -> list[object]:
    """How many positions each read pass at `block` covered, from captured `recompute.read` events."""
    return [e["positions"] for e in logs if e["event"] == "recompute.read" and e["block"] == block]


_HEALTH = re.compile(r"Health factor ([0-9.]+)")
_BLOCK = re.compile(r"Block (\d+)")


def health_and_block(text: str) -> tuple[Decimal, int]:
    health, block = _HEALTH.search(text), _BLOCK.search(text)
    assert health and block, f"message lacks health factor or block: {text!r}"
    return Decimal(health.group(1)), int(block.group(1))


@pytest.fixture
def start_bot(start_watcher: StartWatcher, chain: Chain) -> Callable[..., Awaitable[Running]]:
    """chainwatch with the bot on, Aave and Morpho configured, and no operator watch: chats bring their own."""
    from tests.fork.bot_support import morpho_protocol

    async def start(**overrides: object) -> Running:
        overrides.setdefault("protocols", aave_protocol(chain) + morpho_protocol(chain))
        overrides.setdefault("bot", "check_cooldown_seconds = 0")
        return await start_watcher(watched=[], **overrides)

    return start
