"""The old way, rebuilt for comparison: every `interval` seconds, read each watched position with its own
`eth_call`s, one after another (no multicall, no concurrency), and post a Telegram alert for each account found
below warn that was not alerted before.

How each protocol's health is read, as a bot of that protocol would read it:

- Aave v3: `Pool.getUserAccountData(account)`, its sixth word (one eth_call).
- Morpho Blue: `Morpho.position(id, account)`, `Morpho.market(id)`, the market oracle's `price()` (three eth_calls),
  then Morpho's own `_isHealthy` arithmetic: collateral * price / 1e36 * lltv / 1e18 over the borrow shares'
  assets rounded up (interest as of the market's last update: the old bot does not simulate the accrual).
- Euler v2: the controller vault's `accountLiquidity(account, true)`: LTV-weighted collateral value over the
  liability value (one eth_call).
- Curvance: `MarketManager.statusOf(account)`: the debt it may carry over its debt (one eth_call).

It is the shape of the bot chainwatch replaces, minus its incidental costs: raw JSON-RPC over one aiohttp
session rather than synchronous web3, and nothing but the reads and the sends. Run as its own process by
`benchmarks.latency`; it prints one JSON line per sweep start and end (times on `time.monotonic()`).

    python -m benchmarks.polling_baseline --rpc-url URL --bot-api URL --token T (--pool ADDR | --contracts FILE) \
        --accounts FILE [--interval 5] [--warn 1.5]

The accounts FILE holds one `address chat_id [kind [market]]` per line: kind `aave_v3` (the default, read on
`--pool`), `morpho_blue` (with the market id), `euler_v2` or `curvance`. The contracts FILE is JSON:
`{"aave_v3": {"pool": A}, "morpho_blue": {"morpho": A, "markets": {id: {"oracle": A, "lltv": n}}},
"euler_v2": {"vault": A}, "curvance": {"manager": A}}` (only the kinds the accounts use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from eth_utils import keccak

_GET_USER_ACCOUNT_DATA = keccak(text="getUserAccountData(address)")[:4].hex()
_POSITION = keccak(text="position(bytes32,address)")[:4].hex()
_MARKET = keccak(text="market(bytes32)")[:4].hex()
_PRICE = keccak(text="price()")[:4].hex()
_ACCOUNT_LIQUIDITY = keccak(text="accountLiquidity(address,bool)")[:4].hex()
_STATUS_OF = keccak(text="statusOf(address)")[:4].hex()
_ORACLE_PRICE_SCALE = 10**36
_WAD = 10**18
_VIRTUAL_SHARES, _VIRTUAL_ASSETS = 10**6, 1  # Morpho's SharesMathLib


def _say(event: str, **facts: object) -> None:
    print(json.dumps({"event": event, **facts}), flush=True)


def _word(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


def _words(raw: str) -> list[int]:
    body = raw.removeprefix("0x")
    return [int(body[i : i + 64], 16) for i in range(0, len(body), 64)]


async def eth_call(session: aiohttp.ClientSession, rpc_url: str, to: str, data: str, what: str) -> list[int]:
    """One eth_call at the latest block; its result as 32-byte words."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": to, "data": "0x" + data}, "latest"]}
    async with session.post(rpc_url, json=body) as response:
        answer = await response.json()
    if "error" in answer:
        raise RuntimeError(f"eth_call {what} failed: {answer['error']}")
    return _words(answer["result"])


def _ratio(limit: int, owed: int) -> float:
    return math.inf if owed == 0 else limit / owed


class Health:
    """Each protocol's health read, the old way: sequential eth_calls, the protocol's own arithmetic."""

    def __init__(self, session: aiohttp.ClientSession, rpc_url: str, contracts: dict[str, Any]) -> None:
        self._session, self._url, self._contracts = session, rpc_url, contracts

    async def of(self, kind: str, account: str, market: str | None) -> float:
        match kind:
            case "aave_v3":
                data = _GET_USER_ACCOUNT_DATA + _word(account)
                words = await eth_call(self._session, self._url, self._contracts["aave_v3"]["pool"], data, account)
                return words[5] / 1e18  # the sixth word: healthFactor, 1e18-scaled
            case "morpho_blue":
                return await self._morpho(account, market or "")
            case "euler_v2":
                data = _ACCOUNT_LIQUIDITY + _word(account) + "1".rjust(64, "0")
                vault = self._contracts["euler_v2"]["vault"]
                collateral, liability = await eth_call(self._session, self._url, vault, data, account)
                return _ratio(collateral, liability)
            case "curvance":
                manager = self._contracts["curvance"]["manager"]
                _, max_debt, debt = await eth_call(self._session, self._url, manager, _STATUS_OF + _word(account), account)
                return _ratio(max_debt, debt)
        raise ValueError(f"unknown kind {kind!r}")

    async def _morpho(self, account: str, market_id: str) -> float:
        morpho, market = self._contracts["morpho_blue"]["morpho"], self._contracts["morpho_blue"]["markets"][market_id]
        market_word = market_id.removeprefix("0x")
        _, borrow_shares, collateral = await eth_call(self._session, self._url, morpho,
                                                      _POSITION + market_word + _word(account), account)  # fmt: skip
        totals = await eth_call(self._session, self._url, morpho, _MARKET + market_word, market_id)
        (price,) = await eth_call(self._session, self._url, market["oracle"], _PRICE, market_id)
        total_borrow_assets, total_borrow_shares = totals[2], totals[3]
        borrowed = -(-borrow_shares * (total_borrow_assets + _VIRTUAL_ASSETS) // (total_borrow_shares + _VIRTUAL_SHARES))
        return _ratio(collateral * price // _ORACLE_PRICE_SCALE * int(market["lltv"]) // _WAD, borrowed)


async def send_alert(session: aiohttp.ClientSession, bot_api: str, token: str, chat_id: int, text: str) -> None:
    async with session.post(f"{bot_api}/bot{token}/sendMessage", json={"chat_id": chat_id, "text": text}) as response:
        if response.status != 200:
            raise RuntimeError(f"sendMessage answered {response.status}: {await response.text()}")


async def poll(args: argparse.Namespace) -> None:
    watched = []
    for line in args.accounts.read_text().splitlines():
        address, chat, *rest = line.split()
        watched.append((address, int(chat), rest[0] if rest else "aave_v3", rest[1] if len(rest) > 1 else None))
    contracts: dict[str, Any] = json.loads(args.contracts.read_text()) if args.contracts else {}
    if args.pool:
        contracts["aave_v3"] = {"pool": args.pool}
    alerted: set[str] = set()
    async with aiohttp.ClientSession() as session:
        health = Health(session, args.rpc_url, contracts)
        sweep = 0
        while True:
            sweep += 1
            started = time.monotonic()
            _say("sweep.started", sweep=sweep, at=started)
            sent = 0
            for address, chat_id, kind, market in watched:
                factor = await health.of(kind, address, market)
                if factor < args.warn and address not in alerted:
                    text = f"WARN {address}: health factor {factor:.3f} is below {args.warn}"
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
    parser.add_argument("--pool", help="Aave v3 Pool (for accounts of kind aave_v3)")
    parser.add_argument("--contracts", type=Path, help="JSON: each kind's contracts (see above)")
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
