"""Past events in bounded `eth_getLogs` ranges, for discovery: the node's range limit (Monad's public endpoints
allow 100 blocks) is respected, and a scan that would take very many requests is logged with how to shorten it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import structlog

from chainwatch.chain import Log, log_from_rpc
from chainwatch.rpc import Rpc

log = structlog.get_logger(__name__)

_LONG_SCAN = 1_000  # requests


async def scan_logs(rpc: Rpc, address: str, topic_filters: Sequence[list[object]], first: int, last: int,
                    log_range: int, *, protocol: str) -> AsyncIterator[tuple[int, list[Log]]]:  # fmt: skip
    """Yields (filter index, logs) for each filter over each range of at most `log_range` blocks in
    [first, last]; nothing when first > last."""
    if first > last:
        return
    requests = len(topic_filters) * -(-(last + 1 - first) // log_range)
    if requests > _LONG_SCAN:
        # Left at its default of 0 on a long chain, the scan is tens of thousands of requests.
        log.warning("discovery.long_scan", protocol=protocol, from_block=first, to_block=last, requests=requests,
                    hint="set discovery_from_block to the protocol's deployment block")  # fmt: skip
    for start in range(first, last + 1, log_range):
        end = min(start + log_range - 1, last)
        for i, topics in enumerate(topic_filters):
            query = {"address": address, "topics": topics, "fromBlock": hex(start), "toBlock": hex(end)}
            yield i, [log_from_rpc(raw) for raw in await rpc.request("eth_getLogs", [query])]


def first_block(from_block: int, after: int | None) -> int:
    """Where a scan starts: the configured beginning, or just after what an earlier scan covered."""
    return from_block if after is None else max(from_block, after + 1)
