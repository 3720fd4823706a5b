"""`chainwatch demo`: the whole product on a throw-away local chain, in under a minute, with nothing to set up.

Starts the pinned Anvil, deploys the devnet (real Aave v3), opens three positions of different risk, runs
the watcher exactly as `chainwatch run` does (alerts to standard output, no Telegram token), crashes the
WETH price in steps and brings it back, then stops.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from chainwatch.app import Watcher
from chainwatch.config import load_config
from chainwatch.devnet.actions import DevnetActions
from chainwatch.devnet.anvil import running_anvil
from chainwatch.devnet.deploy import Devnet, deploy_devnet

# (label, collateral, borrow): at WETH $2,000 these sit at health 2.25 (WBTC only), 1.70 and 1.55.
POSITIONS = [
    ("steady (WBTC collateral)", {"WBTC": Decimal("0.05")}, {"USDC": Decimal(1000)}),
    ("moderate", {"WETH": Decimal(1)}, {"USDC": Decimal(1000)}),
    ("leveraged", {"WETH": Decimal(1)}, {"USDC": Decimal(1100)}),
]
WETH_PATH = [1800, 1600, 1400, 1250, 2000]
STEP_DEADLINE = 15.0


def _config_text(node_ws: str, devnet: Devnet, accounts: list[str], db: Path) -> str:
    watches = "\n".join(
        f'[[watch]]\naddress = "{account}"\nlabel = "{label}"\n' for account, (label, _, _) in zip(accounts, POSITIONS)
    )
    return f"""
[chain]
chain_id = {devnet.chain_id}
ws_urls = ["{node_ws}"]
multicall3 = "{devnet.multicall3}"

[storage]
path = "{db}"

[alerts]
warn = 1.5
critical = 1.2

[[protocols]]
kind = "aave_v3"
name = "neverland-devnet"
pool_addresses_provider = "{devnet.aave_v3.pool_addresses_provider}"

{watches}
"""


def say(text: str) -> None:
    print(f"\n== demo: {text}", flush=True)


async def run_demo() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chainwatch-demo-") as workdir:
        async with running_anvil() as node:
            say(f"Anvil is up on {node.http_url}; deploying Aave v3 with WETH, WBTC and USDC")
            devnet = await deploy_devnet(node.http_url)
            async with DevnetActions(node.http_url, devnet) as actions:
                accounts = (await actions.anvil_accounts())[1 : 1 + len(POSITIONS)]
                for account, (label, supply, borrow) in zip(accounts, POSITIONS):
                    await actions.open_position(account, supply=supply, borrow=borrow)
                    say(f"opened {label}: {account} supplies {_amounts(supply)}, borrows {_amounts(borrow)}")
                config_path = Path(workdir) / "demo.toml"
                config_path.write_text(_config_text(node.ws_url, devnet, accounts, Path(workdir) / "demo.db"))
                watcher = Watcher(load_config(config_path))
                stop = asyncio.Event()
                async with asyncio.TaskGroup() as group:
                    serving = group.create_task(watcher.serve(stop))
                    await _wait(watcher.ready.wait(), serving)
                    say("watching 3 positions; moving the WETH price")
                    for price in WETH_PATH:
                        block = await actions.set_price("WETH", price)
                        say(f"WETH -> ${price:,} (block {block})")
                        await _wait(watcher.wait_settled(block), serving)
                    stop.set()
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


async def _wait(condition, serving: asyncio.Task[None]) -> None:  # type: ignore[no-untyped-def]
    """Waits for `condition` with a deadline; if the watcher died meanwhile its error surfaces instead."""
    waiter = asyncio.ensure_future(condition)
    done, _ = await asyncio.wait({waiter, serving}, timeout=STEP_DEADLINE, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if serving in done:
            serving.result()
        raise TimeoutError(f"the demo step did not finish within {STEP_DEADLINE:.0f} s")


def _amounts(amounts: dict[str, Decimal]) -> str:
    return ", ".join(f"{amount} {symbol}" for symbol, amount in amounts.items())


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo()))
