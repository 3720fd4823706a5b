"""chainwatch's Prometheus metrics, declared once. Only the I/O edges (engine, listener, RPC, sender, outbox) record
into them; the pure core never imports this module.

Labels are bounded sets (endpoint index, method, outcome, protocol, kind, task): never a chat id, an address or a
URL, which would grow without bound or leak an API key.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

# Seconds from a block reaching chainwatch to its alerts: most are well under a second, a backlog is not.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_SIZE_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 100000)

HEAD_BLOCK = Gauge("chainwatch_head_block", "Latest block number: seen from the node, or fully processed.", ["stage"])
LAG_BLOCKS = Gauge("chainwatch_processing_lag_blocks", "Blocks seen but not yet processed.")
LAG_SECONDS = Gauge("chainwatch_processing_lag_seconds", "Seconds since the oldest seen but unprocessed block arrived.")
BLOCK_TO_QUEUED = Histogram(
    "chainwatch_block_to_alert_queued_seconds", "From a block reaching chainwatch to its alert in the outbox.",
    buckets=_LATENCY_BUCKETS,
)  # fmt: skip
BLOCK_TO_SENT = Histogram(
    "chainwatch_block_to_alert_sent_seconds", "From a block reaching chainwatch to its alert accepted by Telegram.",
    buckets=_LATENCY_BUCKETS,
)  # fmt: skip
POSITIONS_WATCHED = Gauge("chainwatch_positions_watched", "Watched (account, protocol) targets.", ["protocol"])
PASS_POSITIONS = Histogram("chainwatch_pass_positions", "Positions read per read pass.", buckets=_SIZE_BUCKETS)
SCREENED = Counter(
    "chainwatch_positions_screened_total", "Holders of a repriced asset not re-read: far from warn at the new price.",
)
READ_BATCH_LIMIT = Gauge("chainwatch_read_batch_limit_calls", "Calls per aggregate3 the reader uses now (learnt).")
PASS_ETH_CALLS = Histogram("chainwatch_pass_eth_calls", "eth_call requests per read pass.", buckets=_SIZE_BUCKETS)
# outcome: ok; answered (the node's own JSON-RPC error, e.g. a revert: not the endpoint's fault); and the endpoint's
# failures, each resting it: 429, 5xx, timeout, malformed (a body that is not JSON-RPC), error (no connection, or
# another HTTP status).
RPC_REQUESTS = Counter(
    "chainwatch_rpc_requests_total", "JSON-RPC requests by endpoint (its index in the config), method and outcome.",
    ["endpoint", "method", "outcome"],
)  # fmt: skip
RECONNECTS = Counter("chainwatch_websocket_reconnects_total", "WebSocket connections lost and opened again.")
WEBSOCKET_ENDPOINT = Gauge("chainwatch_websocket_endpoint_index",
                           "Index in ws_urls of the WebSocket in use (0: the primary).")  # fmt: skip
MALFORMED_PAYLOADS = Counter("chainwatch_malformed_payloads_total", "WebSocket frames skipped as malformed, by kind.",
                             ["kind"])  # fmt: skip
BACKFILLED_BLOCKS = Counter("chainwatch_backfilled_blocks_total", "Blocks replayed with eth_getLogs after a reconnect.")
REORGS = Counter("chainwatch_reorgs_total", "Replaced blocks noticed (reorgs, abandoned proposals).")
REORG_DEPTH = Histogram("chainwatch_reorg_depth_blocks", "How many blocks each reorg replaced.",
                        buckets=(1, 2, 3, 5, 8, 16, 32, 64, 128))  # fmt: skip
OUTBOX_MESSAGES = Gauge("chainwatch_outbox_messages", "Messages waiting in the outbox.", ["kind"])
OUTBOX_OLDEST_SECONDS = Gauge("chainwatch_outbox_oldest_age_seconds", "Age of the oldest waiting message.", ["kind"])
TELEGRAM_SENDS = Counter("chainwatch_telegram_sends_total", "Messages handed to Telegram, by outcome.", ["outcome"])
UNREADABLE_POSITIONS = Gauge("chainwatch_unreadable_positions", "Watched targets whose last read failed.")
PROGRESS_DONE = Gauge("chainwatch_progress_done", "Items done of a long task (discovery, first read, backfill).",
                      ["task"])  # fmt: skip
PROGRESS_TOTAL = Gauge("chainwatch_progress_total", "Items in all of a long task.", ["task"])
# Only in a `chainwatch run --role` process: 1 while it is the active holder of the role's duty, 0 as a standby.
ROLE_ACTIVE = Gauge("chainwatch_role_active", "Whether this process is active (1) or a standby (0) in a role.", ["role"])

class ChainProgress:
    """The heads seen and processed, with when each block reached chainwatch (monotonic, bounded): the lag gauges,
    the block -> alert latencies and the health endpoint's facts all come from here."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new watcher starts (or the chain was rewound past what was seen): nothing seen yet."""
        self.seen = 0
        self.processed = 0
        self.last_head_at: float | None = None
        self._seen_at: dict[int, float] = {}

    def rewound(self, head: int) -> None:
        """Blocks above `head` were replaced: the newest seen is `head`, whatever was seen above it."""
        self.seen = head
        self._seen_at = {n: at for n, at in self._seen_at.items() if n <= head}
        self._update_lag()

    def block_seen(self, number: int) -> None:
        now = time.monotonic()
        self.last_head_at = now
        self._seen_at.setdefault(number, now)
        self.seen = max(self.seen, number)
        HEAD_BLOCK.labels("seen").set(self.seen)
        if len(self._seen_at) > 4096:
            for old in sorted(self._seen_at)[:2048]:
                del self._seen_at[old]
        self._update_lag()

    def block_processed(self, number: int) -> None:
        self.processed = number
        HEAD_BLOCK.labels("processed").set(number)
        self._update_lag()

    def since(self, number: int) -> float | None:
        """Seconds since block `number` reached chainwatch; None when this process did not see it."""
        seen = self._seen_at.get(number)
        return None if seen is None else time.monotonic() - seen

    def lag_seconds(self) -> float:
        waiting = [at for block, at in self._seen_at.items() if block > self.processed]
        return time.monotonic() - min(waiting) if waiting else 0.0

    def _update_lag(self) -> None:
        LAG_BLOCKS.set(max(0, self.seen - self.processed))
        LAG_SECONDS.set(self.lag_seconds())


CHAIN = ChainProgress()


# A read pass's time per stage (see stage_timings.py), so that a slower release shows which stage grew.
PASS_STAGE_SECONDS = Histogram(
    "chainwatch_pass_stage_seconds",
    "Seconds a read pass spent per stage (rpc: summed over concurrent chunks); send: per message.",
    ["stage"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)  # fmt: skip


def observe_stages(milliseconds: dict[str, float]) -> None:
    for name, ms in milliseconds.items():
        PASS_STAGE_SECONDS.labels(name.removesuffix("_ms")).observe(ms / 1000)
