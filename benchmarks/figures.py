"""What one run measured, per system and per N, and the side-by-side table printed at the end."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class SystemFigures:
    """One system's figures for one N; latencies in seconds from the price block being mined."""

    latencies: list[float]
    calls_on_price_block: int
    calls_per_quiet_block: float
    peak_rss_mib: float
    sweep_seconds: float | None = None  # the polling baseline only
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    @property
    def max(self) -> float:
        return max(self.latencies) if self.latencies else math.nan


@dataclass
class Row:
    positions: int
    alerts: int
    setup_seconds: float
    run_seconds: float
    chainwatch: SystemFigures
    baseline: SystemFigures
    scenario: str = "aave"  # "mix": N positions over the four protocols (`--mix`)


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def table(rows: Sequence[Row]) -> str:
    """A Markdown table, one line per N, chainwatch's columns then the baseline's."""
    header = [
        "N", "alerts",
        "cw p50", "cw p99", "cw max", "cw eth_call price blk", "cw eth_call/quiet blk", "cw peak RSS",
        "poll p50", "poll p99", "poll max", "poll eth_call price blk", "poll eth_call/quiet blk", "poll sweep",
        "poll peak RSS",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for row in rows:
        cw, poll = row.chainwatch, row.baseline
        cells = [
            f"{row.positions:,}" + (" mix" if row.scenario == "mix" else ""), f"{row.alerts:,}",
            _seconds(cw.p50), _seconds(cw.p99), _seconds(cw.max), f"{cw.calls_on_price_block:,}",
            f"{cw.calls_per_quiet_block:g}", f"{cw.peak_rss_mib:.0f} MiB",
            _seconds(poll.p50), _seconds(poll.p99), _seconds(poll.max), f"{poll.calls_on_price_block:,}",
            f"{poll.calls_per_quiet_block:.0f}", _seconds(poll.sweep_seconds or math.nan), f"{poll.peak_rss_mib:.0f} MiB",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
