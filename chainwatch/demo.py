"""`chainwatch demo`: the whole product on a throw-away local chain, in under a minute, with nothing to set up.

Starts the pinned Anvil, deploys the devnet (real Aave v3 and Morpho Blue, Euler v2- and Curvance-shaped
markets over the same tokens and feeds), opens positions of different risk on all four, and runs the watcher
exactly as `chainwatch run` does, talking to the built-in local Bot API server (the one the tests use) instead of
Telegram. A user, Alice, chats with the bot (/add, /check, /position, /repay, a button under an alert, /mute)
while the WETH price crashes in steps and comes back; the operator's chat receives the configured watches'
alerts. Everything said is printed as a chat transcript.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path

from chainwatch.app import Watcher
from chainwatch.config import load_config
from chainwatch.devnet.actions import DevnetActions
from chainwatch.devnet.anvil import running_anvil
from chainwatch.devnet.botapi import BotApiServer, running_bot_api
from chainwatch.devnet.curvance import CurvanceActions
from chainwatch.devnet.deploy import Devnet, deploy_devnet
from chainwatch.devnet.euler import EulerActions
from chainwatch.devnet.morpho import MorphoActions

WETH_PATH = [1800, 1600, 1400, 1250, 2000]
STEP_DEADLINE = 15.0
DEMO_TOKEN = "123456:demo-token-of-the-local-bot-api"
OPERATOR_CHAT, ALICE = 100, 7001
CHAT_NAMES = {OPERATOR_CHAT: "operator", ALICE: "alice"}


class DemoPosition:
    """One account's position on one protocol, for the narration and the config."""

    def __init__(self, protocol: str, label: str, summary: str) -> None:
        self.protocol, self.label, self.summary = protocol, label, summary
        self.account = ""


POSITIONS = [
    DemoPosition("neverland", "steady", "Aave: 0.05 WBTC against 1,000 USDC (health 2.25; WETH moves do not touch it)"),
    DemoPosition("neverland", "moderate", "Aave: 1 WETH against 1,000 USDC (health 1.70)"),
    DemoPosition("neverland", "leveraged", "Aave: 1 WETH against 1,100 USDC (health 1.55)"),
    DemoPosition("morpho", "morpho borrower", "Morpho Blue WETH/USDC (LLTV 86%): 1 WETH against 1,100 USDC (health 1.56)"),
    DemoPosition("euler", "euler borrower", "Euler v2 USDC vault: 1 WETH collateral against 1,050 USDC (health 1.62)"),
    DemoPosition("curvance", "curvance borrower", "Curvance: 1 WETH collateral against 1,020 USDC (health 1.57)"),
]


async def _open_positions(http_url: str, devnet: Devnet, accounts: list[str], stack: AsyncExitStack) -> None:
    assert devnet.morpho_blue is not None and devnet.euler_v2 is not None and devnet.curvance is not None
    aave = await stack.enter_async_context(DevnetActions(http_url, devnet))
    morpho = await stack.enter_async_context(MorphoActions(http_url, devnet.morpho_blue))
    euler = EulerActions(http_url, devnet, devnet.euler_v2)
    stack.push_async_callback(euler.aclose)
    curvance = await stack.enter_async_context(CurvanceActions(http_url, devnet.curvance))
    steady, moderate, leveraged, on_morpho, on_euler, on_curvance = accounts
    opened: list[Awaitable[int]] = [
        aave.open_position(steady, supply={"WBTC": Decimal("0.05")}, borrow={"USDC": 1000}),
        aave.open_position(moderate, supply={"WETH": 1}, borrow={"USDC": 1000}),
        aave.open_position(leveraged, supply={"WETH": 1}, borrow={"USDC": 1100}),
        morpho.open_position(on_morpho, "WETH/USDC", collateral=1, borrow=1100),
        euler.open_position(on_euler, collateral={"WETH": 1}, borrow=1050),
        curvance.open_position(on_curvance, collateral={"WETH": 1}, borrow={"USDC": 1020}),
    ]
    for position, opening in zip(POSITIONS, opened):
        await opening  # one at a time: the devnet's transaction helpers must not overlap on one node
        say(f"opened {position.label} {position.account}: {position.summary}")


async def prepare_chain(http_url: str, stack: AsyncExitStack) -> tuple[Devnet, DevnetActions]:
    """The demo's chain: the devnet deployed and the story's positions opened (also the cluster demo's)."""
    devnet = await deploy_devnet(http_url)
    aave = await stack.enter_async_context(DevnetActions(http_url, devnet))
    accounts = (await aave.anvil_accounts())[1 : 1 + len(POSITIONS)]
    for position, account in zip(POSITIONS, accounts):
        position.account = account
    await _open_positions(http_url, devnet, accounts, stack)
    return devnet, aave


def _config_text(node_ws: str, devnet: Devnet, db: Path, bot_api: str | None = None) -> str:
    assert devnet.morpho_blue is not None and devnet.euler_v2 is not None and devnet.curvance is not None
    markets = ", ".join(f'"{market.id}"' for market in devnet.morpho_blue.markets.values())
    watches = "\n".join(
        f'[[watch]]\naddress = "{p.account}"\nlabel = "{p.label}"\nprotocols = ["{p.protocol}"]\n' for p in POSITIONS
    )
    return f"""
[chain]
chain_id = {devnet.chain_id}
ws_urls = ["{node_ws}"]
# A local Anvil has no provider's limit: the default budget (10 requests/s) would only slow the story down.
http_urls = [{{ url = "{"http" + node_ws.removeprefix("ws")}", requests_per_second = 1000 }}]
multicall3 = "{devnet.multicall3}"

[storage]
path = "{db}"
{_telegram(bot_api)}
[alerts]
warn = 1.5
critical = 1.2

[[protocols]]
kind = "aave_v3"
name = "neverland"
pool_addresses_provider = "{devnet.aave_v3.pool_addresses_provider}"

[[protocols]]
kind = "morpho_blue"
name = "morpho"
morpho = "{devnet.morpho_blue.morpho}"
markets = [{markets}]

[[protocols]]
kind = "euler_v2"
name = "euler"
evc = "{devnet.euler_v2.evc}"
vaults = ["{devnet.euler_v2.borrow_vault}"]

[[protocols]]
kind = "curvance"
name = "curvance"
market_managers = ["{devnet.curvance.market_manager}"]

{watches}
"""


def _telegram(bot_api: str | None) -> str:
    if bot_api is None:
        return ""
    return f"""
[telegram]
token = "{DEMO_TOKEN}"
api_base = "{bot_api}"
default_chat_id = {OPERATOR_CHAT}
per_chat_interval = 0.05

[bot]
check_cooldown_seconds = 0
"""


class Transcript:
    """Prints the chat as it happens: what Alice sends, then each message the bot sends (and to whom)."""

    def __init__(self, server: BotApiServer) -> None:
        self._server = server
        self._shown = 0

    def user(self, chat: int, text: str) -> None:
        print(f"\n[{CHAT_NAMES[chat]} -> bot] {text}", flush=True)

    def show_new(self) -> None:
        for message in self._server.messages[self._shown :]:
            buttons = "  ".join(f"[{text}]" for row in message.buttons for text, _ in row)
            body = message.text + (f"\n{buttons}" if buttons else "")
            print(f"\n[bot -> {CHAT_NAMES.get(message.chat_id, message.chat_id)}]\n" + _indent(body), flush=True)
        self._shown = len(self._server.messages)

    async def ask(self, chat: int, text: str) -> None:
        """Alice writes `text`; returns once the bot has answered it."""
        self.user(chat, text)
        self._server.send_text(chat, text)
        await self._answered(chat)

    async def press(self, chat: int, message_id: int, label: str) -> None:
        message = self._server.message(chat, message_id)
        data = next(d for row in message.buttons for text, d in row if text == label)
        self.user(chat, f"(presses [{label}])")
        self._server.press_button(chat, message_id, data)
        await self._answered(chat)

    async def _answered(self, chat: int) -> None:
        await self._server.wait_for_message(chat, after=self._shown, timeout=STEP_DEADLINE)
        self.show_new()


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def say(text: str) -> None:
    print(f"\n== demo: {text}", flush=True)


async def run_demo() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chainwatch-demo-") as workdir:
        async with running_anvil() as node, running_bot_api(DEMO_TOKEN) as server, AsyncExitStack() as stack:
            say(f"Anvil is up on {node.http_url}; deploying Aave v3, Morpho Blue, Euler v2 and Curvance markets")
            devnet, aave = await prepare_chain(node.http_url, stack)
            config_path = Path(workdir) / "demo.toml"
            config_path.write_text(_config_text(node.ws_url, devnet, Path(workdir) / "demo.db", server.base_url))
            watcher = Watcher(load_config(config_path))
            stop = asyncio.Event()
            chat = Transcript(server)
            async with asyncio.TaskGroup() as group:
                serving = group.create_task(watcher.serve(stop))
                await _wait(watcher.ready.wait(), serving)
                say(f"watching {len(POSITIONS)} positions on 4 protocols for the operator's chat; the bot answers a "
                    "local Bot API server, so here is the chat as Telegram would carry it")  # fmt: skip
                await _converse(chat, serving, POSITIONS[2].account)
                say("moving the WETH price (one feed for all four protocols)")
                for step, price in enumerate(WETH_PATH):
                    block = await aave.set_price("WETH", price)
                    say(f"WETH -> ${price:,} (block {block})")
                    await _wait(watcher.wait_settled(block), serving)
                    chat.show_new()
                    if step == 0:
                        await _after_first_alert(chat, server, serving)
                stop.set()
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


async def _converse(chat: Transcript, serving: asyncio.Task[None], account: str) -> None:
    """Alice adds the leveraged borrower's address and asks what the bot knows about it."""
    for text in (f"/add {account} leveraged", "/check", "/position leveraged", "/repay leveraged 1.8"):
        await _wait(chat.ask(ALICE, text), serving)


async def _after_first_alert(chat: Transcript, server: BotApiServer, serving: asyncio.Task[None]) -> None:
    """Alice got a WARN: she opens the position from its button, then mutes warnings; LIQUIDATABLE still comes."""
    alert = next(m for m in reversed(server.messages_to(ALICE)) if m.buttons and " WARN " in f" {m.text} ")
    await _wait(chat.press(ALICE, alert.message_id, "Position"), serving)
    await _wait(chat.ask(ALICE, "/mute leveraged 2h"), serving)


async def _wait(condition: Awaitable[object], serving: asyncio.Task[None]) -> None:
    """Waits for `condition` with a deadline; if the watcher died meanwhile its error surfaces instead."""
    waiter = asyncio.ensure_future(condition)
    done, _ = await asyncio.wait({waiter, serving}, timeout=STEP_DEADLINE, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if serving in done:
            serving.result()
        raise TimeoutError(f"the demo step did not finish within {STEP_DEADLINE:.0f} s")


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo()))
