"""Where a benchmark's figures come from: the code measured, the machine, and the printed report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Final

from benchmarks.figures import Row, table
from chainwatch.devnet.anvil import anvil_binary

ROOT: Final = Path(__file__).resolve().parent.parent


def export_chainwatch(ref: str, into: Path) -> Path:
    """`chainwatch/` as committed at `ref`, extracted under `into` (read from git; the repository is untouched)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "chainwatch"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def code_under_test(ref: str | None) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, check=False, capture_output=True, text=True).stdout.strip()

    if ref is not None:
        return f"chainwatch/ at {git('rev-parse', '--short', ref)} ({ref})"
    dirty = " + uncommitted changes in chainwatch/" if git("status", "--porcelain", "chainwatch") else ""
    return f"working tree at {git('rev-parse', '--short', 'HEAD')}{dirty}"


def machine_facts() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    anvil = subprocess.run([anvil_binary(), "--version"], check=False, capture_output=True, text=True).stdout.splitlines()
    return {
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "anvil": anvil[0].removeprefix("anvil Version: ") if anvil else "?",
    }


def report(rows: list[Row], facts: dict[str, Any], options: argparse.Namespace, total: float) -> str:
    scenario = ("Positions: N spread over Aave v3, Morpho Blue, Euler v2 and Curvance (account i on protocol i % 4; "
                "each watched on its own protocol only), a fraction of each exposed to WETH; the baseline reads each "
                "protocol's own health view (Morpho: position, market and oracle price, three eth_calls)."
                if options.mix else "Positions: N on Aave v3, a fraction exposed to WETH.")  # fmt: skip
    lines = [
        table(rows),
        "",
        scenario,
        "",
        (f"Latency: from the price block being mined (the earlier of evm_mine answering and the node's newHeads "
        f"reaching the benchmark) to the alert's sendMessage reaching the local Bot API server, both on the "
        f"benchmark's time.monotonic(). Blocks: one every {options.block_time:g} s, the "
        f"price update alone in its own block. chainwatch: messages_per_second={options.messages_per_second:g}, "
        f"per_chat_interval=1.0, one chat per account (no limit binds). Polling: sweeps start every "
        f"{options.interval:g} s (or back to back when a sweep is longer); the price moves right after sweep 2 starts."),
        "",
        f"Code: {facts['code']}",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "code"),
        "Run time: " + "; ".join(
            f"N={r.positions:,} {r.run_seconds:.0f} s (setup {r.setup_seconds:.0f} s)" for r in rows
        ) + f"; total {total:.0f} s",
        "",
        "Details:",
    ]  # fmt: skip
    for row in rows:
        stages = ", ".join(f"{k.removesuffix('_ms')} {v:.1f} ms" for k, v in row.chainwatch.stages_ms.items())
        lines.append(f"  N={row.positions:,} chainwatch stages for the price block (its own timings; rpc summed over "
                     f"concurrent chunks): {stages or '-'}; process CPU per message sent after the block was "
                     f"processed: {row.chainwatch.notes.get('send_cpu_ms_per_message')} ms "
                     f"({row.chainwatch.notes.get('send_cpu_messages')} messages)")  # fmt: skip
        lines.append(f"  N={row.positions:,} chainwatch: {json.dumps(row.chainwatch.notes)}")
        lines.append(f"  N={row.positions:,} polling:    {json.dumps(row.baseline.notes)}")
    return "\n".join(lines)
