"""chainwatch at scale: N real Aave v3 positions (100,000 for real) watched by one process on one core.

    .venv/bin/python -m benchmarks.scale [--positions 100000] [--sustain-seconds 300] [--profile]

The chain (see `benchmarks.scale_chain`) is built once per scenario and loaded from Anvil's dumped state after
that. Then, with chainwatch as a process of its own and every block mined by the benchmark: a cold start (empty
database), quiet blocks, a price block (WETH -3%, about 1% of the positions below warn), a restart while WETH
falls further, and a sustained random walk of WETH (+/-0.5% every block) whose threshold crossings are checked at
the end against the Pool's own `getUserAccountData` for a sample of accounts. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from benchmarks.child import Child
from benchmarks.clock import BlockClock, NodeRpc
from benchmarks.latency import Cursor, _wall
from benchmarks.procstat import cpu_seconds, memory_mib
from benchmarks.provenance import code_under_test, machine_facts
from benchmarks.scale_chain import CRITICAL, PRICE_DROP, WARN, WETH_START, Chain, crossing_on_drop, scale_chain
from chainwatch.devnet.common import FEED_DECIMALS, POOL, aave_artifact
from chainwatch.devnet.solc import compile_own_contracts
from chainwatch.devnet.transactions import Rpc, RpcFailed
from chainwatch.model import Level
from chainwatch.storage import open_store
from tests.support.botapi import BotApiServer, running_bot_api

TOKEN: Final = "123456:SCALE-token"
PROTOCOL: Final = "neverland-devnet"
CHAT_BASE: Final = 1_000_000
READY_TIMEOUT_S: Final = 1_800.0
ALERTS_TIMEOUT_S: Final = 600.0
SECOND_DROP: Final = Decimal("0.04")  # while chainwatch is down, after the first drop
WALK_STEP: Final = 0.005
SAMPLE: Final = 1_000
_POLL_S: Final = 0.005
_PRICE_GAS: Final = 150_000
ROOT: Final = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


def config_text(chain: Chain, bot: BotApiServer, node_ws: str, node_http: str) -> str:
    """The watcher's config: no `[[watch]]` (100,000 would pass the 1 MiB a config may have); see `seed_watches`."""
    return f"""[chain]
chain_id = {chain.meta.devnet.chain_id}
ws_urls = ["{node_ws}"]
http_urls = [{{ url = "{node_http}", requests_per_second = 1000 }}]
multicall3 = "{chain.meta.devnet.multicall3}"

[telegram]
token = "{TOKEN}"
api_base = "{bot.base_url}"
messages_per_second = 10000
per_chat_interval = 1.0

[storage]
path = "chainwatch.db"

[alerts]
warn = {WARN}
critical = {CRITICAL}

[[protocols]]
kind = "aave_v3"
name = "{PROTOCOL}"
pool_addresses_provider = "{chain.meta.devnet.aave_v3.pool_addresses_provider}"
"""


async def seed_watches(db: Path, accounts: list[str]) -> None:
    """Each account watched by a chat of its own, as if each user had added theirs through the bot (`/watch`).

    The schema is chainwatch's own (opening the store creates it); the rows go in with one executemany, since
    100,000 `add_watch` calls would take minutes. Nothing else is in the database: no levels, no cursor.
    """
    async with open_store(db):
        pass
    now = time.time()
    with sqlite3.connect(db) as connection:
        connection.executemany("INSERT INTO chats (chat_id, type, created_at) VALUES (?, 'private', ?)",
                               [(CHAT_BASE + i, now) for i in range(len(accounts))])  # fmt: skip
        connection.executemany("INSERT INTO chat_watches (chat_id, address, label, created_at) VALUES (?, ?, NULL, ?)",
                               [(CHAT_BASE + i, a, now) for i, a in enumerate(accounts)])  # fmt: skip
    connection.close()


class Watcher:
    """One chainwatch process on the benchmark's config and database, optionally under `benchmarks.profiled`."""

    def __init__(self, workdir: Path, profile: bool) -> None:
        self.workdir, self.profile = workdir, profile
        self.runs = 0

    async def start(self) -> Child:
        self.runs += 1
        cli = ["--log-level", "info", "run", "--config", str(self.workdir / "chainwatch.toml")]
        if self.profile:
            argv = [sys.executable, "-m", "benchmarks.profiled", str(self.workdir / f"profile.run{self.runs}"), *cli]
        else:
            argv = [sys.executable, "-m", "chainwatch.cli", *cli]
        return await Child.start(argv, self.workdir / f"chainwatch.run{self.runs}.log", ROOT)

    def signal(self, child: Child, signum: int) -> None:
        if self.profile:
            child.process.send_signal(signum)


def since(child: Child, event: str, origin_wall: float, **match: Any) -> float | None:
    """Seconds from `origin_wall` to the first `event` in the child's log matching `match`, or None."""
    for e in child.events:
        if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
            return round(_wall(e["timestamp"]) - origin_wall, 4)
    return None


async def wait_alerts(bot: BotApiServer, chats: set[int], timeout: float = ALERTS_TIMEOUT_S) -> float:
    """Waits until every chat in `chats` got a message; the monotonic time the last one arrived."""
    deadline = time.monotonic() + timeout
    while True:
        got = {m.chat_id: m.received_at for m in bot.messages if m.chat_id in chats}
        if len(got) == len(chats):
            return max(got.values(), default=time.monotonic())
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(got)} of {len(chats)} expected alerts arrived within {timeout:g} s")
        await asyncio.sleep(_POLL_S)


class Prices:
    """WETH's feed, moved by the benchmark: one `updateAnswer` mined alone in its block."""

    def __init__(self, rpc: NodeRpc, aggregator: str) -> None:
        self.rpc, self.aggregator = rpc, aggregator
        self.usd = Decimal(WETH_START)

    async def set(self, usd: Decimal) -> int:
        feed = (await compile_own_contracts())["SettableFeed"]
        admin = (await self.rpc.call("eth_accounts"))[0]
        data = feed.calldata("updateAnswer", int(usd * 10**FEED_DECIMALS))
        await self.rpc.call("eth_sendTransaction", {"from": admin, "to": self.aggregator, "data": data,
                                                    "gas": hex(_PRICE_GAS)})  # fmt: skip
        await self.rpc.call("evm_mine")
        self.usd = usd
        return int(await self.rpc.call("eth_blockNumber"), 16)


async def run(options: argparse.Namespace) -> int:
    started = time.monotonic()
    facts = {"code": code_under_test(None), **machine_facts()}
    figures: dict[str, Any] = {"positions": options.positions, "seed": options.seed}
    async with scale_chain(options.positions, options.seed, rebuild=options.rebuild) as chain:
        what = "built and cached" if chain.built else "loaded from the cache"
        say(f"chain {what} in {chain.seconds:.1f} s ({chain.state_mib:.0f} MiB of state)")
        figures["chain"] = {"built": chain.built, "seconds": round(chain.seconds, 2),
                            "build_seconds_when_built": round(chain.meta.build_seconds, 2),
                            "state_mib": round(chain.state_mib, 1)}  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="chainwatch-scale-") as tmp:
            workdir = Path(options.workdir) if options.workdir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            try:
                await measure(chain, options, workdir, figures)
            finally:
                used = sum(f.stat().st_size for f in chain.node.cache_path.rglob("*") if f.is_file())
                figures["anvil_cache_path_mib_at_end"] = round(used / 2**20, 1)
    figures["total_seconds"] = round(time.monotonic() - started, 1)
    facts["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(report(figures, facts))
    if options.json:
        Path(options.json).write_text(json.dumps({"facts": facts, "figures": figures}, indent=2, default=str))
    return 0


async def measure(chain: Chain, options: argparse.Namespace, workdir: Path, figures: dict[str, Any]) -> None:
    node = chain.node
    aggregator = chain.meta.devnet.aave_v3.reserves["WETH"].aggregator
    rpc = NodeRpc(node.http_url)
    async with running_bot_api(TOKEN) as bot:
        (workdir / "chainwatch.toml").write_text(config_text(chain, bot, node.ws_url, node.http_url))
        await seed_watches(workdir / "chainwatch.db", chain.accounts)
        watcher = Watcher(workdir, options.profile)
        cursor = Cursor(workdir / "chainwatch.db")
        await rpc.call("evm_setAutomine", False)
        prices = Prices(rpc, aggregator)
        try:
            child = await watcher.start()
            try:
                await cold_start(child, options.positions, figures)
                await quiet_blocks(child, rpc, cursor, options.quiet_blocks, figures)
                await price_block(child, watcher, rpc, cursor, prices, bot, chain, figures)
            finally:
                await child.stop()
            # Only WETH moves: the second drop crosses whoever the first did not and this one does.
            first = set(crossing_on_drop(chain.plan))
            total = 1 - (1 - PRICE_DROP) * (1 - SECOND_DROP)
            crossed_while_down = set(crossing_on_drop(chain.plan, total)) - first
            await prices.set(prices.usd * (1 - SECOND_DROP))
            child = await watcher.start()
            try:
                await warm_restart(child, bot, crossed_while_down, figures)
                await sustained(child, watcher, rpc, cursor, prices, options, figures)
                figures["sustained"]["check"] = await check_sample(chain, node.http_url, cursor, options, workdir)
                _, peak = memory_mib(child.process.pid)
                figures["peak_rss_mib_restarted_process"] = round(peak, 1)
            finally:
                await child.stop()
        finally:
            cursor.close()
            await rpc.aclose()


async def cold_start(child: Child, count: int, figures: dict[str, Any]) -> None:
    say(f"cold start: {count:,} watches, empty database")
    await child.wait_for(lambda e: e.get("event") == "listener.backfilled", READY_TIMEOUT_S)
    ready = time.monotonic() - child.started_at
    rss, peak = memory_mib(child.process.pid)
    read = since(child, "recompute.read", child.started_wall)
    figures["cold_start"] = {"ready_s": round(ready, 2), "first_full_read_logged_s": read,
                             "subscribed_s": since(child, "listener.subscribed", child.started_wall),
                             "rss_mib": round(rss, 1), "peak_rss_mib": round(peak, 1),
                             "cpu_s": round(cpu_seconds(child.process.pid), 2)}  # fmt: skip
    say(f"cold start: ready after {ready:.1f} s, RSS {rss:.0f} MiB (peak {peak:.0f} MiB)")


async def quiet_blocks(child: Child, rpc: NodeRpc, cursor: Cursor, blocks: int, figures: dict[str, Any]) -> None:
    """CPU between the cursor reaching the first and the last of `blocks` empty blocks, mined 0.4 s apart."""
    head = await _mine(rpc)
    await cursor.reached(head, child)
    cpu0, first = cpu_seconds(child.process.pid), head
    for _ in range(blocks):
        await asyncio.sleep(0.4)  # a chain's block time, not a synchronisation: the cursor is awaited below
        head = await _mine(rpc)
    await cursor.reached(head, child)
    cpu = cpu_seconds(child.process.pid) - cpu0
    figures["quiet"] = {"blocks": head - first, "cpu_ms_per_block": round(1000 * cpu / (head - first), 3)}
    say(f"quiet: {1000 * cpu / (head - first):.2f} ms CPU per block over {head - first} blocks")


async def price_block(child: Child, watcher: Watcher, rpc: NodeRpc, cursor: Cursor, prices: Prices,
                      bot: BotApiServer, chain: Chain, figures: dict[str, Any]) -> None:  # fmt: skip
    crossing = crossing_on_drop(chain.plan)
    holders = sum(1 for p in chain.plan if p.collateral == "WETH")
    watcher.signal(child, signal.SIGUSR2)
    cpu0 = cpu_seconds(child.process.pid)
    wall, now = time.time(), time.monotonic()
    block = await prices.set(prices.usd * (1 - PRICE_DROP))
    mined_wall = wall + (time.monotonic() - now)
    await cursor.reached(block, child, timeout=ALERTS_TIMEOUT_S)
    cpu = cpu_seconds(child.process.pid) - cpu0
    watcher.signal(child, signal.SIGUSR2)
    last = await wait_alerts(bot, {CHAT_BASE + i for i in crossing})
    child._read_new()
    figures["price_block"] = {
        "weth_holders": holders, "expected_alerts": len(crossing), "cpu_ms_to_cursor": round(1000 * cpu, 1),
        "first_alerts_queued_s": since(child, "alerts.queued", mined_wall, block=block),
        "all_read_logged_s": since(child, "recompute.read", mined_wall, block=block),
        "all_alerts_sent_s": round(last - now, 3), "messages": len(bot.messages),
    }  # fmt: skip
    say(f"price block: {len(crossing):,} of {holders:,} WETH holders below warn; {1000 * cpu:.0f} ms CPU")
    rss, peak = memory_mib(child.process.pid)
    figures["peak_rss_mib"] = round(peak, 1)
    watcher.signal(child, signal.SIGUSR1)


async def warm_restart(child: Child, bot: BotApiServer, crossed: set[int], figures: dict[str, Any]) -> None:
    say(f"warm restart: {len(crossed):,} positions crossed warn while chainwatch was down")
    chats = {CHAT_BASE + i for i in crossed}
    before = len(bot.messages)
    await child.wait_for(lambda e: e.get("event") == "listener.subscribed", READY_TIMEOUT_S)
    subscribed = time.monotonic() - child.started_at
    if not chats:  # a small N may have no position in the band the second drop crosses
        await child.wait_for(lambda e: e.get("event") == "listener.backfilled", READY_TIMEOUT_S)
        figures["warm_restart"] = {"crossed_while_down": 0, "subscribed_s": round(subscribed, 3)}
        return
    deadline = time.monotonic() + ALERTS_TIMEOUT_S
    while not (first := next((m for m in bot.messages[before:] if m.chat_id in chats), None)):
        if time.monotonic() > deadline:
            raise TimeoutError("no alert for a position that crossed while chainwatch was down")
        await asyncio.sleep(_POLL_S)
    last = await wait_alerts(bot, chats)
    await child.wait_for(lambda e: e.get("event") == "listener.backfilled", READY_TIMEOUT_S)
    figures["warm_restart"] = {
        "crossed_while_down": len(crossed), "subscribed_s": round(subscribed, 3),
        "first_queued_s": since(child, "alerts.queued", child.started_wall),
        "first_alert_sent_s": round(first.received_at - child.started_at, 3),
        "first_alert_after_subscribed_s": round(first.received_at - child.started_at - subscribed, 3),
        "all_sent_s": round(last - child.started_at, 3),
        "backfilled_s": since(child, "listener.backfilled", child.started_wall),
    }  # fmt: skip
    say(f"warm restart: subscribed {subscribed:.2f} s, first alert {first.received_at - child.started_at:.2f} s")


async def sustained(child: Child, watcher: Watcher, rpc: NodeRpc, cursor: Cursor, prices: Prices,
                    options: argparse.Namespace, figures: dict[str, Any]) -> None:  # fmt: skip
    """A price update in every block for `sustain_seconds`; the cursor's lag sampled as each block is mined."""
    rng = random.Random(options.seed + 1)
    say(f"sustained: {options.sustain_seconds:g} s of WETH moving +/-{100 * WALK_STEP:g}% per 0.4 s block")
    rss0, _ = memory_mib(child.process.pid)
    cpu0, lags, blocks = cpu_seconds(child.process.pid), [], 0
    watcher.signal(child, signal.SIGUSR2)
    ends = time.monotonic() + options.sustain_seconds
    due = time.monotonic()
    while time.monotonic() < ends:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        due += 0.4
        seen = cursor.block()
        step = Decimal(f"{rng.uniform(-WALK_STEP, WALK_STEP):.6f}")
        block = await prices.set(prices.usd * (1 + step))
        blocks += 1
        lags.append(block - 1 - (seen or 0))  # blocks mined before this one that were not processed yet
    await cursor.reached(block, child, timeout=ALERTS_TIMEOUT_S)
    watcher.signal(child, signal.SIGUSR2)
    cpu = cpu_seconds(child.process.pid) - cpu0
    rss1, peak = memory_mib(child.process.pid)
    figures["sustained"] = {
        "seconds": options.sustain_seconds, "blocks": blocks, "max_lag_blocks": max(lags, default=0),
        "blocks_with_lag_above_1": sum(1 for lag in lags if lag > 1), "cpu_ms_per_block": round(1000 * cpu / blocks, 2),
        "rss_mib_start": round(rss0, 1), "rss_mib_end": round(rss1, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2), "peak_rss_mib": round(peak, 1),
        "weth_end_usd": float(prices.usd), "block_end": block,
    }  # fmt: skip
    watcher.signal(child, signal.SIGUSR1)
    say(f"sustained: max lag {max(lags, default=0)} blocks, RSS {rss0:.0f} -> {rss1:.0f} MiB")


async def check_sample(chain: Chain, http_url: str, cursor: Cursor, options: argparse.Namespace,
                       workdir: Path) -> dict[str, Any]:  # fmt: skip
    """Every sampled account's level on chain (Pool.getUserAccountData at the last processed block) against the
    level chainwatch holds for it: a miss is a chain level worse than chainwatch's (a crossing not alerted)."""
    block = cursor.block()
    assert block is not None
    sample = sorted(random.Random(options.seed + 2).sample(range(len(chain.accounts)), min(SAMPLE, len(chain.accounts))))
    pool = aave_artifact(POOL)
    rpc = Rpc(http_url)
    try:
        calls = [("eth_call", [{"to": chain.meta.devnet.aave_v3.pool,
                                "data": pool.calldata("getUserAccountData", chain.accounts[i])}, hex(block)])
                 for i in sample]  # fmt: skip
        results = await rpc.batch(calls)
    finally:
        await rpc.aclose()
    db = sqlite3.connect(f"file:{workdir / 'chainwatch.db'}?mode=ro", uri=True)
    try:
        stored = {(chat, account.lower()): level for chat, account, level in
                  db.execute("SELECT chat_id, account, MAX(level) FROM levels GROUP BY chat_id, account")}  # fmt: skip
    finally:
        db.close()
    misses, stale, below = [], 0, 0
    for i, result in zip(sample, results, strict=True):
        if isinstance(result, RpcFailed):
            raise result
        health = int(result[2 + 64 * 5 : 2 + 64 * 6], 16) / 1e18
        on_chain = _level(health)
        held = Level(stored.get((CHAT_BASE + i, chain.accounts[i].lower()), Level.OK))
        below += on_chain > Level.OK
        if on_chain > held:
            misses.append({"index": i, "health": round(health, 4), "held": held.name})
        elif held > on_chain and health > _line(held) * 1.02:  # past hysteresis, yet still held worse
            stale += 1
    return {"block": block, "sampled": len(sample), "below_warn_on_chain": below, "misses": len(misses),
            "miss_examples": misses[:5], "held_worse_past_hysteresis": stale}  # fmt: skip


def _level(health: float) -> Level:
    if health < 1.0:
        return Level.LIQUIDATABLE
    if health < CRITICAL:
        return Level.CRITICAL
    return Level.WARN if health < WARN else Level.OK


def _line(level: Level) -> float:
    return {Level.WARN: WARN, Level.CRITICAL: CRITICAL, Level.LIQUIDATABLE: 1.0}.get(level, WARN)


async def _mine(rpc: NodeRpc) -> int:
    await rpc.call("evm_mine")
    return int(await rpc.call("eth_blockNumber"), 16)


TARGETS: Final = (
    ("peak RSS", "peak_rss_mib", 300, "MiB"),
    ("CPU per quiet block", "quiet.cpu_ms_per_block", 2, "ms"),
    ("price block CPU (reads included)", "price_block.cpu_ms_to_cursor", 40, "ms"),
    ("cold start to ready", "cold_start.ready_s", 30, "s"),
    ("warm restart to subscribed", "warm_restart.subscribed_s", 3, "s"),
    ("first alert after subscribed", "warm_restart.first_alert_after_subscribed_s", 1, "s"),
    ("sustained max lag", "sustained.max_lag_blocks", 1, "blocks"),
    ("sustained RSS growth", "sustained.rss_growth_pct", 5, "%"),
    ("sustained misses in sample", "sustained.check.misses", 0, ""),
)


def report(figures: dict[str, Any], facts: dict[str, Any]) -> str:
    def get(path: str) -> Any:
        value: Any = figures
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    lines = [f"| figure (N={figures['positions']:,}) | measured | target | |", "|---|---:|---:|---|"]
    for label, path, target, unit in TARGETS:
        value = get(path)
        verdict = "-" if value is None else ("meets" if value <= target else "MISSES")
        lines.append(f"| {label} | {value} {unit} | <= {target} {unit} | {verdict} |")
    lines += ["", f"Code: {facts['code']}", "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "code"),
              "", "Figures: " + json.dumps(figures, default=str)]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=100_000, help="N: Aave positions watched (1,000 for a smoke run)")
    parser.add_argument("--seed", type=int, default=1, help="the positions' healths and the random walk")
    parser.add_argument("--sustain-seconds", type=float, default=300.0, help="length of the sustained random walk")
    parser.add_argument("--quiet-blocks", type=int, default=50, help="empty blocks CPU is averaged over")
    parser.add_argument("--rebuild", action="store_true", help="build the chain again even if it is cached")
    parser.add_argument("--profile", action="store_true",
                        help="run chainwatch under tracemalloc and cProfile; dumps beside its log (see --workdir)")
    parser.add_argument("--workdir", help="keep config, logs, database and profiles here (default: a temporary dir)")
    parser.add_argument("--json", help="also write every figure to this file")
    options = parser.parse_args(argv)
    if options.positions < 2:
        parser.error("--positions must be at least 2")
    return asyncio.run(run(options))


if __name__ == "__main__":
    sys.exit(main())
