"""Alert latency, RPC load and memory of chainwatch against the polling bot it replaces, on a local Anvil.

    .venv/bin/python -m benchmarks.latency [--positions 1000 10000] [--fraction 0.1] [--interval 5] [--mix]

For each N: a fresh Anvil with real Aave v3 and N borrowers (a known fraction exposed to WETH, see
`benchmarks.market`), or with `--mix` N borrowers spread over Aave v3, Morpho Blue, Euler v2 and Curvance (a
known fraction of each exposed, see `benchmarks.mix`); then each system in turn, as a process of its own, on
the same chain state (an Anvil snapshot): it starts, quiet blocks go by (one every `--block-time` seconds),
WETH drops in one transaction, and every alert is timed from the moment that block was mined to the moment its
request reached the local Bot API server. `benchmarks/README.md` says how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from benchmarks.child import Child
from benchmarks.clock import BlockClock, NodeRpc, PriceMove
from benchmarks.figures import Row, SystemFigures, percentile
from benchmarks.floor import rpc_floor
from benchmarks.market import (
    AAVE,
    CRITICAL,
    HEALTH_EXPOSED,
    HEALTH_OTHERS,
    WARN,
    WETH_AFTER,
    WETH_BEFORE,
    Market,
    build_market,
)
from benchmarks.mix import (
    CURVANCE,
    EULER,
    KINDS,
    MORPHO,
    build_mixed_market,
    morpho_market_of,
)
from benchmarks.provenance import (
    code_under_test,
    export_chainwatch,
    machine_facts,
    report,
)
from chainwatch.config import ConfigError, load_config
from chainwatch.devnet.anvil import AnvilNode, running_anvil
from chainwatch.index import Target
from tests.support.botapi import BotApiServer, SentMessage, running_bot_api
from tests.support.rpcproxy import RpcProxy, running_proxy

TOKEN: Final = "123456:BENCHMARK-token"
READY_TIMEOUT_S: Final = 900.0
ALERTS_TIMEOUT_S: Final = 300.0
LINGER_S: Final = 1.0  # after the last expected alert, how long to watch for unexpected ones
_POLL_S: Final = 0.005
ROOT: Final = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


# -- chainwatch ------------------------------------------------------------------------------------------


def chainwatch_config(market: Market, proxy: RpcProxy, bot: BotApiServer, messages_per_second: float) -> str:
    def narrowed(i: int) -> str:  # the mix: each account is watched on the one protocol it has a position on
        return f'protocols = ["{market.protocol_of(i)}"]\n' if market.mixed else ""

    watches = "".join(
        f'[[watch]]\naddress = "{account}"\nlabel = "borrower {i}"\nchat_id = {market.chat_of(i)}\n{narrowed(i)}\n'
        for i, account in enumerate(market.accounts)
    )
    return f"""[chain]
chain_id = {market.devnet.chain_id}
ws_urls = ["{proxy.ws_url}"]
http_urls = [{{ url = "{proxy.http_url}", requests_per_second = 1000 }}]  # loopback: measure chainwatch, not a budget
multicall3 = "{market.devnet.multicall3}"

[telegram]
token = "{TOKEN}"
api_base = "{bot.base_url}"
messages_per_second = {messages_per_second}
per_chat_interval = 1.0

[storage]
path = "chainwatch.db"

[alerts]
warn = {WARN}
critical = {CRITICAL}

{protocols_config(market)}
{watches}"""


def protocols_config(market: Market) -> str:
    """The `[[protocols]]` tables: Aave alone, or with `--mix` all four as `chainwatch demo` configures them."""
    devnet = market.devnet
    tables = {AAVE: f'pool_addresses_provider = "{devnet.aave_v3.pool_addresses_provider}"'}
    if market.mixed:
        assert devnet.morpho_blue is not None and devnet.euler_v2 is not None and devnet.curvance is not None
        markets = ", ".join(f'"{m.id}"' for m in devnet.morpho_blue.markets.values())
        tables[MORPHO] = f'morpho = "{devnet.morpho_blue.morpho}"\nmarkets = [{markets}]'
        tables[EULER] = f'evc = "{devnet.euler_v2.evc}"\nvaults = ["{devnet.euler_v2.borrow_vault}"]'
        tables[CURVANCE] = f'market_managers = ["{devnet.curvance.market_manager}"]'
    return "".join(f'[[protocols]]\nkind = "{KINDS[name]}"\nname = "{name}"\n{body}\n\n' for name, body in tables.items())


class Cursor:
    """chainwatch's block cursor, read from its SQLite file (read-only): the last block it fully processed."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self._connection: sqlite3.Connection | None = None

    def block(self) -> int | None:
        if self._connection is None:
            if not self._db.exists():
                return None
            self._connection = sqlite3.connect(f"file:{self._db}?mode=ro", uri=True, isolation_level=None)
        row = self._connection.execute("SELECT block_number FROM cursor WHERE id = 1").fetchone()
        return None if row is None else int(row[0])

    async def reached(self, block: int, child: Child, timeout: float = 60.0) -> float:
        """Waits until chainwatch has processed `block`; the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while (seen := self.block()) is None or seen < block:
            if child.process.returncode is not None:
                raise RuntimeError(f"chainwatch exited ({child.process.returncode}); see {child.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"chainwatch did not process block {block} within {timeout:g} s (at {seen})")
            await asyncio.sleep(_POLL_S)
        return time.monotonic()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


async def measure_chainwatch(node: AnvilNode, market: Market, options: argparse.Namespace, workdir: Path) -> SystemFigures:
    async with running_bot_api(TOKEN) as bot, running_proxy(node.http_url, node.ws_url) as proxy:
        config = workdir / "chainwatch.toml"
        config.write_text(chainwatch_config(market, proxy, bot, options.messages_per_second))
        rpc = NodeRpc(node.http_url)
        clock = BlockClock(rpc, node.ws_url, options.block_time, lambda: proxy.count("eth_call"))
        cursor = Cursor(workdir / "chainwatch.db")
        argv = [sys.executable, "-m", "chainwatch.cli", "--log-level", "info", "run", "--config", str(config)]
        # `python -m` puts its working directory first on sys.path: that is where the watcher's code comes from.
        child = await Child.start(argv, workdir / "chainwatch.log", options.chainwatch_code)
        try:
            # Ready as `Watcher.ready` is: subscribed and backfilled (the backfill's requests count as start-up).
            await child.wait_for(lambda e: e.get("event") == "listener.backfilled", READY_TIMEOUT_S)
            startup_seconds = time.monotonic() - child.started_at
            startup = Counter(proxy.calls)
            say(f"chainwatch ready after {startup_seconds:.1f} s ({startup['eth_call']} eth_calls at start-up)")
            if bot.messages:
                raise RuntimeError(f"chainwatch alerted {len(bot.messages)} accounts before any price moved")
            await clock.start()
            ticking = asyncio.create_task(clock.run())
            try:
                before = Counter(proxy.calls)
                last_quiet = clock.head + options.quiet_blocks
                while clock.head < last_quiet:
                    await asyncio.sleep(_POLL_S)
                await cursor.reached(last_quiet, child)
                quiet = Counter(proxy.calls) - before
                before = Counter(proxy.calls)
                move = await clock.move_price(market.devnet.aave_v3.reserves["WETH"].aggregator, WETH_AFTER)
                processed_at = await cursor.reached(move.block, child)
                on_price_block = Counter(proxy.calls) - before
                sending = await send_cpu(child, bot, len(market.exposed))
                messages = await all_alerts(bot, market)
            finally:
                ticking.cancel()
                await clock.stop()
            peak = child.peak_rss_mib()
        finally:
            await child.stop()
            cursor.close()
            await rpc.aclose()
        # chainwatch is stopped: the floor has the machine to itself, as chainwatch had during its block.
        floor = await rpc_floor(config, affected_targets(market), move.block, proxy.http_url)
        say(f"floor: {floor['floor_eth_calls']} bare aggregate3 eth_calls in {1000 * floor['floor_s']:.1f} ms (median)")
    started = next((e for e in child.events if e.get("event") == "recompute.read"), {})
    try:
        # Per position read: the start-up read's eth_calls; in the mix the start-up also holds Euler's sub-account
        # discovery (256 getControllers per address), so the price block's targeted re-read is the measure there.
        if market.mixed:
            per_read = on_price_block["eth_call"] / max(1, len(market.exposed))
        else:
            per_read = startup["eth_call"] / len(market.accounts)
        refresh = refresh_estimate(load_config(config), market, per_read)
    except ConfigError:  # the benchmark's own chainwatch (the working tree) may read configs differently than --ref
        refresh = {}
    steps = timeline(child.events, move)
    latencies = [m.received_at - move.origin for m in messages]
    return SystemFigures(
        latencies=latencies,
        calls_on_price_block=on_price_block["eth_call"],
        calls_per_quiet_block=quiet["eth_call"] / options.quiet_blocks,
        peak_rss_mib=peak,
        first_queued_s=steps["first_alert_queued"],
        all_queued_s=steps["last_alert_queued"],
        first_sent_s=round(min(latencies), 4),
        last_sent_s=round(max(latencies), 4),
        stages_ms=stages(child.events, move.block),
        notes={
            **floor,
            **sending,
            "startup_seconds": round(startup_seconds, 2),
            "startup_read_done_after_spawn_s": round(_wall(started["timestamp"]) - child.started_wall, 2)
            if started else None,
            "startup_requests": dict(startup),
            "startup_read_positions": started.get("positions"),
            **refresh,
            "quiet_blocks": options.quiet_blocks,
            "requests_in_quiet_blocks": dict(quiet),
            "requests_for_price_block": dict(on_price_block),
            "price_block_timeline_s": steps,
            "price_block_cursor_seen_after_s": round(processed_at - move.origin, 4),
            **({"by_protocol": by_protocol(market, messages, move.origin)} if market.mixed else {}),
            **origin_facts(move),
            "limits": f"messages_per_second={options.messages_per_second:g}, per_chat_interval=1.0, one chat per account",
        },
    )


# -- one position alone ---------------------------------------------------------------------------------------


async def measure_alone(node: AnvilNode, market: Market, options: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """`--alone`: one watched account exposed; WETH drops (it goes below warn) and comes back, `--repeat` times.
    Each drop's block -> queued is chainwatch's own `alerts.queued` line against the block's origin."""
    async with running_bot_api(TOKEN) as bot, running_proxy(node.http_url, node.ws_url) as proxy:
        config = workdir / "chainwatch.toml"
        config.write_text(chainwatch_config(market, proxy, bot, options.messages_per_second))
        rpc = NodeRpc(node.http_url)
        clock = BlockClock(rpc, node.ws_url, options.block_time, lambda: proxy.count("eth_call"))
        cursor = Cursor(workdir / "chainwatch.db")
        argv = [sys.executable, "-m", "chainwatch.cli", "--log-level", "info", "run", "--config", str(config)]
        child = await Child.start(argv, workdir / "chainwatch.log", options.chainwatch_code)
        aggregator = market.devnet.aave_v3.reserves["WETH"].aggregator
        queued, sent = [], []
        try:
            await child.wait_for(lambda e: e.get("event") == "listener.backfilled", READY_TIMEOUT_S)
            await clock.start()
            ticking = asyncio.create_task(clock.run())
            try:
                for _ in range(options.repeat):
                    told = len(bot.messages)
                    move = await clock.move_price(aggregator, WETH_AFTER)
                    event = await child.wait_for(lambda e, b=move.block: e.get("event") == "alerts.queued"
                                                 and e.get("block") == b, ALERTS_TIMEOUT_S)  # fmt: skip
                    queued.append(_wall(event["timestamp"]) - move.wall_at_origin)
                    deadline = time.monotonic() + ALERTS_TIMEOUT_S
                    while len(bot.messages) <= told and time.monotonic() < deadline:
                        await asyncio.sleep(_POLL_S)
                    sent.append(bot.messages[told].received_at - move.origin)
                    back = await clock.move_price(aggregator, WETH_BEFORE)
                    await cursor.reached(back.block, child)
            finally:
                ticking.cancel()
                await clock.stop()
        finally:
            await child.stop()
            cursor.close()
            await rpc.aclose()
    return {"repetitions": options.repeat, "block_to_queued_p50_s": round(percentile(queued, 50), 4),
            "block_to_queued_max_s": round(max(queued), 4), "block_to_sent_p50_s": round(percentile(sent, 50), 4),
            "block_to_queued_s": [round(q, 4) for q in queued]}  # fmt: skip


# -- the polling baseline -----------------------------------------------------------------------------------


async def measure_baseline(node: AnvilNode, market: Market, options: argparse.Namespace, workdir: Path) -> SystemFigures:
    async with running_bot_api(TOKEN) as bot, running_proxy(node.http_url, node.ws_url) as proxy:
        accounts, contracts = workdir / "accounts.txt", workdir / "contracts.json"
        accounts.write_text("".join(f"{baseline_line(market, i)}\n" for i in range(len(market.accounts))))
        contracts.write_text(json.dumps(baseline_contracts(market), indent=2))
        rpc = NodeRpc(node.http_url)
        clock = BlockClock(rpc, node.ws_url, options.block_time, lambda: proxy.count("eth_call"))
        await clock.start()
        ticking = asyncio.create_task(clock.run())
        argv = [sys.executable, "-m", "benchmarks.polling_baseline", "--rpc-url", proxy.http_url,
                "--bot-api", bot.base_url, "--token", TOKEN, "--contracts", str(contracts),
                "--accounts", str(accounts), "--interval", str(options.interval), "--warn", str(WARN)]  # fmt: skip
        child = await Child.start(argv, workdir / "baseline.log", ROOT)
        try:
            first = await child.wait_for(_sweep("started", 1), READY_TIMEOUT_S)
            # The first sweep is the quiet cycle measured; the price moves right after the second one starts.
            second = await child.wait_for(_sweep("started", 2), READY_TIMEOUT_S)
            cycle_calls = proxy.count("eth_call")  # nothing was read before sweep 1: these are one cycle's
            move = await clock.move_price(market.devnet.aave_v3.reserves["WETH"].aggregator, WETH_AFTER)
            finished = next(e for e in child.events if _sweep("finished", 1)(e))
            say(f"baseline: sweep of {len(market.accounts):,} reads took {finished['seconds']:.2f} s; "
                f"price moved {1000 * (move.sent_at - second['at']):.0f} ms after sweep 2 started")  # fmt: skip
            messages = await all_alerts(bot, market, timeout=ALERTS_TIMEOUT_S + 3 * max(options.interval, finished["seconds"]))
            while clock.after(move.block) is None:
                await asyncio.sleep(_POLL_S)
            peak = child.peak_rss_mib()
        finally:
            ticking.cancel()
            await clock.stop()
            await child.stop()
            await rpc.aclose()
    cycle = [m for m in clock.mined if first["at"] < m.at <= second["at"]]
    price_block = next(m for m in clock.mined if m.number == move.block)
    next_block = clock.after(move.block)
    assert next_block is not None
    third = next((e for e in child.events if _sweep("started", 3)(e)), None)
    late = [m for m in messages if third is not None and m.received_at >= third["at"]]
    return SystemFigures(
        latencies=[m.received_at - move.origin for m in messages],
        calls_on_price_block=next_block.calls - price_block.calls,
        calls_per_quiet_block=cycle_calls / len(cycle),
        peak_rss_mib=peak,
        sweep_seconds=finished["seconds"],
        notes={
            "interval_s": options.interval,
            "first_sweep_seconds": round(finished["seconds"], 3),
            "eth_calls_in_quiet_cycle": cycle_calls,
            "blocks_in_quiet_cycle": len(cycle),
            "price_moved_after_sweep_start_s": round(move.sent_at - second["at"], 4),
            "alerts_only_in_sweep_3": len(late),  # read in sweep 2 before the price moved
            **({"by_protocol": by_protocol(market, messages, move.origin)} if market.mixed else {}),
            **origin_facts(move),
            "limits": "none (one sendMessage per alert, inline in the sweep), one chat per account",
        },
    )


def baseline_line(market: Market, index: int) -> str:
    """The baseline's accounts-file line for account `index`: address, chat, kind and (Morpho) market id."""
    name = market.protocol_of(index)
    line = f"{market.accounts[index]} {market.chat_of(index)} {KINDS[name]}"
    if name == MORPHO:
        assert market.devnet.morpho_blue is not None
        line += f" {market.devnet.morpho_blue.markets[morpho_market_of(index in market.exposed)].id}"
    return line


def baseline_contracts(market: Market) -> dict[str, Any]:
    devnet = market.devnet
    contracts: dict[str, Any] = {"aave_v3": {"pool": devnet.aave_v3.pool}}
    if market.mixed:
        assert devnet.morpho_blue is not None and devnet.euler_v2 is not None and devnet.curvance is not None
        contracts["morpho_blue"] = {"morpho": devnet.morpho_blue.morpho, "markets": {
            m.id: {"oracle": m.oracle, "lltv": m.lltv} for m in devnet.morpho_blue.markets.values()}}  # fmt: skip
        contracts["euler_v2"] = {"vault": devnet.euler_v2.borrow_vault}
        contracts["curvance"] = {"manager": devnet.curvance.market_manager}
    return contracts


def by_protocol(market: Market, messages: list[SentMessage], origin: float) -> dict[str, dict[str, object]]:
    """Per protocol: alerts received and their latency percentiles (seconds after the origin)."""
    found: dict[str, list[float]] = {name: [] for name in market.names()}
    for message in messages:
        found[market.protocol_of(market.index_of_chat(message.chat_id))].append(message.received_at - origin)
    return {name: {"alerts": len(latencies), "p50_s": round(percentile(latencies, 50), 4) if latencies else None,
                   "max_s": round(max(latencies), 4) if latencies else None}
            for name, latencies in found.items()}  # fmt: skip


def refresh_estimate(config: Any, market: Market, calls_per_position: float) -> dict[str, object]:
    """What the scheduled re-reads (interest accrues without events) add per block on average, which the quiet
    window is too short to show: positions read per block under the config's policy, at `calls_per_position`
    eth_calls per position read. Computed, not measured; empty if the config has no policy this knows."""
    policy = getattr(config, "refresh", None)
    if policy is None or not hasattr(policy, "interval_for"):
        return {}
    exposed = len(market.exposed)
    every = {"exposed": policy.interval_for(HEALTH_EXPOSED), "others": policy.interval_for(HEALTH_OTHERS)}
    reads = exposed / every["exposed"] + (len(market.accounts) - exposed) / every["others"]
    return {
        "refresh_every_blocks_at_health_1.70_and_2.25": [every["exposed"], every["others"]],
        "refresh_eth_calls_per_block_amortized": round(reads * calls_per_position, 3),
        "refresh_eth_calls_per_position_read": round(calls_per_position, 4),
    }


def timeline(events: list[dict[str, Any]], move: PriceMove) -> dict[str, float]:
    """When chainwatch's own log says each step for the price block happened, in seconds after the origin."""
    def after(event: str, pick: Any) -> float | None:
        stamps = [_wall(e["timestamp"]) for e in events if e.get("event") == event and e.get("block") == move.block]
        return round(pick(stamps) - move.wall_at_origin, 4) if stamps else None

    return {
        "first_alert_queued": after("alerts.queued", min),  # one line per chunk, once its alerts are committed
        "last_alert_queued": after("alerts.queued", max),
        "read_and_all_queued": after("recompute.read", min),  # logged once the tracker has stored every level
        "first_alert_sent": after("alerts.sent", min),  # one line per commit of sends, `block` its newest
        "last_alert_sent": after("alerts.sent", max),
    }


def stages(events: list[dict[str, Any]], block: int) -> dict[str, float]:
    """chainwatch's own milliseconds per stage for `block`'s read pass (its `recompute.read` line), and the
    sendMessage requests of that block's alerts (`send_ms` and `count` of each `alerts.sent`: total and mean)."""
    read = next((e for e in events if e.get("event") == "recompute.read" and e.get("block") == block), {})
    found = {k: v for k, v in read.items() if k.endswith("_ms")}
    sent = [e for e in events if e.get("event") == "alerts.sent" and e.get("block") == block and "send_ms" in e]
    if count := sum(e["count"] for e in sent):
        found["send_ms"] = round(sum(e["send_ms"] for e in sent), 3)
        found["send_mean_ms"] = round(found["send_ms"] / count, 3)
    return found


async def send_cpu(child: Child, bot: BotApiServer, expected: int) -> dict[str, object]:
    """chainwatch's CPU per message while it only sends: from its cursor passing the price block (every alert
    queued) to the last alert arriving, over the messages sent meanwhile. Whatever else the process does then
    (quiet blocks) counts too: an upper bound on the sender's own cost."""
    cpu, already = child.cpu_seconds(), len(bot.messages)
    deadline = time.monotonic() + ALERTS_TIMEOUT_S
    while len(bot.messages) < expected and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
    sent = len(bot.messages) - already
    if sent < 10:  # too few left after the block was processed to say anything per message
        return {"send_cpu_ms_per_message": None, "send_cpu_messages": sent}
    return {"send_cpu_ms_per_message": round(1000 * (child.cpu_seconds() - cpu) / sent, 3), "send_cpu_messages": sent}


def affected_targets(market: Market) -> list[Target]:
    """The positions the price move touches (the WETH holders), on the protocol each is watched on."""
    return [Target(protocol=market.protocol_of(i), account=market.accounts[i]) for i in market.exposed]


def origin_facts(move: PriceMove) -> dict[str, float]:
    return {
        "evm_mine_round_trip_s": round(move.mined_at - move.sent_at, 4),
        "own_newHeads_minus_evm_mine_answer_s": round(move.head_seen_at - move.mined_at, 4),
    }


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()  # Python 3.11 reads the trailing "Z"


def _sweep(kind: str, number: int):  # type: ignore[no-untyped-def]
    return lambda event: event.get("event") == f"sweep.{kind}" and event.get("sweep") == number


# -- shared -----------------------------------------------------------------------------------------------


async def all_alerts(bot: BotApiServer, market: Market, timeout: float = ALERTS_TIMEOUT_S) -> list[SentMessage]:
    """Waits for one alert per exposed account, then checks no other account was alerted and none twice."""
    expected = len(market.exposed)
    deadline = time.monotonic() + timeout
    while len(bot.messages) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(bot.messages)} of {expected} alerts arrived within {timeout:g} s"
                               f"{_per_protocol(market, bot.messages)}")  # fmt: skip
        await asyncio.sleep(_POLL_S)
    await asyncio.sleep(LINGER_S)
    alerted = Counter(market.index_of_chat(m.chat_id) for m in bot.messages)
    if set(alerted) != set(market.exposed) or any(n > 1 for n in alerted.values()):
        wrong = sorted(set(alerted) ^ set(market.exposed))[:5]
        repeated = sorted(i for i, n in alerted.items() if n > 1)[:5]
        raise RuntimeError(f"alerts do not match the exposed accounts one to one (e.g. indices {wrong}, "
                           f"repeated {repeated}); {len(bot.messages)} messages for {expected} exposed accounts"
                           f"{_per_protocol(market, bot.messages)}")  # fmt: skip
    return list(bot.messages)


def _per_protocol(market: Market, messages: list[SentMessage]) -> str:
    """For an error: alerts received / expected on each protocol (empty for the Aave-only market)."""
    if not market.mixed:
        return ""
    received = Counter(market.protocol_of(market.index_of_chat(m.chat_id)) for m in messages)
    return " (" + ", ".join(f"{name} {received[name]}/{n}" for name, n in market.exposed_by_protocol().items()) + ")"


async def snapshot(rpc: NodeRpc) -> str:
    return str(await rpc.call("evm_snapshot"))


async def measure(count: int, options: argparse.Namespace, workdir: Path) -> Row:
    started = time.monotonic()
    async with running_anvil() as node:
        build = build_mixed_market if options.mix else build_market
        market = await build(node, count, options.fraction)
        spread = ", ".join(f"{name} {n}" for name, n in market.exposed_by_protocol().items()) if market.mixed else ""
        say(f"N={count:,}: deployed and opened {count:,} positions ({len(market.exposed):,} exposed to WETH"
            f"{': ' + spread if spread else ''}) in {market.setup_seconds:.1f} s")  # fmt: skip
        rpc = NodeRpc(node.http_url)
        try:
            saved = await snapshot(rpc)
            (workdir / "chainwatch").mkdir()
            chainwatch = await measure_chainwatch(node, market, options, workdir / "chainwatch")
            say(f"N={count:,}: chainwatch measured ({time.monotonic() - started:.0f} s so far)")
            if await rpc.call("evm_revert", saved) is not True:
                raise RuntimeError("evm_revert refused the snapshot")
            (workdir / "baseline").mkdir()
            baseline = await measure_baseline(node, market, options, workdir / "baseline")
            say(f"N={count:,}: baseline measured ({time.monotonic() - started:.0f} s so far)")
        finally:
            await rpc.aclose()
            # Anvil's own cache of past states, removed with the node: what this N cost the disk at its peak.
            used = sum(f.stat().st_size for f in node.cache_path.rglob("*") if f.is_file())
            say(f"N={count:,}: Anvil state on disk at the end {used / 2**20:,.1f} MiB (removed with the node)")
    return Row(positions=count, alerts=len(market.exposed), setup_seconds=market.setup_seconds,
               run_seconds=time.monotonic() - started, chainwatch=chainwatch, baseline=baseline,
               scenario="mix" if market.mixed else "aave", floor_s=chainwatch.notes.get("floor_s"))  # type: ignore[arg-type]  # fmt: skip


async def run_alone(options: argparse.Namespace) -> int:
    count = options.positions[0]
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp:
        workdir = Path(options.workdir) if options.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        options.chainwatch_code = ROOT if options.ref is None else export_chainwatch(options.ref, workdir / "code")
        async with running_anvil() as node:
            market = await build_market(node, count, 1 / count)  # exactly one account holds WETH
            say(f"alone: {count:,} positions, one exposed; {options.repeat} drops of WETH")
            figures = await measure_alone(node, market, options, workdir)
    figures.update({"code": code_under_test(options.ref), **machine_facts()})
    print("One position alone (one price event moving one watched account below warn): "
          f"p50 block -> queued {1000 * figures['block_to_queued_p50_s']:.1f} ms, max "  # type: ignore[operator]
          f"{1000 * figures['block_to_queued_max_s']:.1f} ms, p50 block -> sent "  # type: ignore[operator]
          f"{1000 * figures['block_to_sent_p50_s']:.1f} ms over {options.repeat} drops, N={count:,}")  # type: ignore[operator]
    print(json.dumps(figures))
    if options.json:
        Path(options.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


async def run(options: argparse.Namespace) -> int:
    if options.alone:
        return await run_alone(options)
    started = time.monotonic()
    facts = {"code": code_under_test(options.ref), **machine_facts()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="chainwatch-bench-") as tmp:
        workdir = Path(options.workdir) if options.workdir else Path(tmp)
        options.chainwatch_code = ROOT if options.ref is None else export_chainwatch(options.ref, workdir / "code")
        for count in options.positions:
            (workdir / f"n{count}").mkdir(parents=True, exist_ok=False)
            rows.append(await measure(count, options, workdir / f"n{count}"))
    total = time.monotonic() - started
    facts["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(report(rows, facts, options, total))
    if options.json:
        Path(options.json).write_text(json.dumps({"facts": facts, "total_seconds": total, "options": vars(options),
                                                  "rows": [{**asdict(r), "floor_ratio": r.floor_ratio} for r in rows]}, indent=2, default=str))  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[1000, 10000], help="N values, one run each")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of positions the WETH drop alerts")
    parser.add_argument("--interval", type=float, default=5.0, help="polling baseline: seconds between sweep starts")
    parser.add_argument("--block-time", type=float, default=0.4, help="seconds between blocks (Monad: ~0.4)")
    parser.add_argument("--quiet-blocks", type=int, default=10, help="empty blocks chainwatch is watched through")
    parser.add_argument("--messages-per-second", type=float, default=10_000.0,
                        help="chainwatch's bot-wide send limit (Telegram's real one is ~25)")  # fmt: skip
    parser.add_argument("--workdir", help="keep configs, logs and databases here (default: a temporary dir)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--mix", action="store_true",
                        help="spread the N positions over Aave v3, Morpho Blue, Euler v2 and Curvance (N/4 each)")
    parser.add_argument("--ref", help="run the watcher from chainwatch/ as committed at this git revision "
                                      "(default: the working tree as it is)")  # fmt: skip
    parser.add_argument("--alone", action="store_true",
                        help="one exposed account among --positions: WETH drops and recovers --repeat times")
    parser.add_argument("--repeat", type=int, default=20, help="with --alone: how many drops")
    options = parser.parse_args(argv)
    if not 0 < options.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    return asyncio.run(run(options))


if __name__ == "__main__":
    sys.exit(main())
