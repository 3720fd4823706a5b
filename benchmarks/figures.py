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
    # chainwatch only, seconds from the price block: its first and last alert in the outbox (its own log), its
    # first and last sendMessage reaching the Bot API server.
    first_queued_s: float | None = None
    all_queued_s: float | None = None
    first_sent_s: float | None = None
    last_sent_s: float | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)  # chainwatch's own time per stage for the block
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
    floor_s: float | None = None  # the same reads bare through the same proxy (benchmarks/floor.py)

    @property
    def floor_ratio(self) -> float | None:
        """chainwatch's all-queued time over the floor: 1.0 would be a watcher that costs nothing but the reads."""
        queued = self.chainwatch.all_queued_s
        return None if queued is None or not self.floor_s else queued / self.floor_s


def _seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value < 0.1:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def table(rows: Sequence[Row]) -> str:
    """A Markdown table, one line per N, chainwatch's columns then the baseline's."""
    header = [
        "N", "alerts",
        "cw first queued", "cw all queued", "floor", "all queued / floor", "cw first sent", "cw last sent",
        "cw p50", "cw p99", "cw max", "cw eth_call price blk", "cw eth_call/quiet blk", "cw peak RSS",
        "poll p50", "poll p99", "poll max", "poll eth_call price blk", "poll eth_call/quiet blk", "poll sweep",
        "poll peak RSS",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for row in rows:
        cw, poll = row.chainwatch, row.baseline
        cells = [
            f"{row.positions:,}" + (" mix" if row.scenario == "mix" else ""), f"{row.alerts:,}",
            _seconds(cw.first_queued_s), _seconds(cw.all_queued_s), _seconds(row.floor_s),
            "-" if row.floor_ratio is None else f"{row.floor_ratio:.2f}x",
            _seconds(cw.first_sent_s), _seconds(cw.last_sent_s),
            _seconds(cw.p50), _seconds(cw.p99), _seconds(cw.max), f"{cw.calls_on_price_block:,}",
            f"{cw.calls_per_quiet_block:g}", f"{cw.peak_rss_mib:.0f} MiB",
            _seconds(poll.p50), _seconds(poll.p99), _seconds(poll.max), f"{poll.calls_on_price_block:,}",
            f"{poll.calls_per_quiet_block:.0f}", _seconds(poll.sweep_seconds or math.nan), f"{poll.peak_rss_mib:.0f} MiB",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
