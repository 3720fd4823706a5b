"""The old way, rebuilt for comparison: every `interval` seconds, read each watched address with its own
`eth_call` to `Pool.getUserAccountData`, one after another (no multicall, no concurrency), and post a
Telegram alert for each account found below warn that was not alerted before.

It is the shape of the bot chainwatch replaces, minus its incidental costs: raw JSON-RPC over one aiohttp
session rather than synchronous web3, and nothing but the reads and the sends. Run as its own process by
`benchmarks.latency`; it prints one JSON line per sweep start and end (times on `time.monotonic()`).

    python -m benchmarks.polling_baseline --rpc-url URL --bot-api URL --token T --pool ADDR \
        --accounts FILE [--interval 5] [--warn 1.5]

FILE holds one `address chat_id` per line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from eth_utils import keccak

_GET_USER_ACCOUNT_DATA = keccak(text="getUserAccountData(address)")[:4].hex()


def _say(event: str, **facts: object) -> None:
    print(json.dumps({"event": event, **facts}), flush=True)


async def health_factor(session: aiohttp.ClientSession, rpc_url: str, pool: str, account: str) -> float:
    """The account's Aave health factor at the latest block, from one eth_call."""
    data = "0x" + _GET_USER_ACCOUNT_DATA + account.lower().removeprefix("0x").rjust(64, "0")
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": pool, "data": data}, "latest"]}
    async with session.post(rpc_url, json=body) as response:
        answer = await response.json()
    if "error" in answer:
        raise RuntimeError(f"eth_call for {account} failed: {answer['error']}")
    raw = answer["result"]
    return int(raw[2 + 5 * 64 : 2 + 6 * 64], 16) / 1e18  # the sixth word: healthFactor, 1e18-scaled


async def send_alert(session: aiohttp.ClientSession, bot_api: str, token: str, chat_id: int, text: str) -> None:
    async with session.post(f"{bot_api}/bot{token}/sendMessage", json={"chat_id": chat_id, "text": text}) as response:
        if response.status != 200:
            raise RuntimeError(f"sendMessage answered {response.status}: {await response.text()}")


async def poll(args: argparse.Namespace) -> None:
    watched = [(address, int(chat)) for address, chat in (line.split() for line in args.accounts.read_text().splitlines())]
    alerted: set[str] = set()
    async with aiohttp.ClientSession() as session:
        sweep = 0
        while True:
            sweep += 1
            started = time.monotonic()
            _say("sweep.started", sweep=sweep, at=started)
            sent = 0
            for address, chat_id in watched:
                health = await health_factor(session, args.rpc_url, args.pool, address)
                if health < args.warn and address not in alerted:
                    text = f"WARN {address}: health factor {health:.3f} is below {args.warn}"
                    await send_alert(session, args.bot_api, args.token, chat_id, text)
                    alerted.add(address)
                    sent += 1
            finished = time.monotonic()
            _say("sweep.finished", sweep=sweep, at=finished, seconds=finished - started, reads=len(watched), sent=sent)
            await asyncio.sleep(max(0.0, started + args.interval - time.monotonic()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polling_baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--bot-api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--accounts", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds from one sweep's start to the next's")
    parser.add_argument("--warn", type=float, default=1.5)
    args = parser.parse_args(argv)
    try:
        asyncio.run(poll(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
