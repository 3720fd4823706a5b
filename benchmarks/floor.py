"""The RPC floor of a price block: the same reads chainwatch makes for it, with nothing of chainwatch around them.

The affected positions' calls are planned and ABI-encoded beforehand by chainwatch's own protocol code, cut into
the same `aggregate3` chunks (`plan_chunks`, the config's `calls_per_batch`), and sent as bare `eth_call`s, pinned
to the price block, through the same counting proxy and as many at once as chainwatch's reader allows; the answers
are read but not decoded. The time from the first request to the last answer is what no watcher can beat.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from chainwatch.config import load_config
from chainwatch.index import Target
from chainwatch.multicall import Call, encode_aggregate3
from chainwatch.protocols.registry import protocol_from_config
from chainwatch.read_pass import plan_chunks
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc


async def rpc_floor(
    config_path: Path, targets: Sequence[Target], block: int, url: str, *, repeats: int = 5
) -> dict[str, object]:
    """Median and best seconds of `repeats` bare passes over `targets`' reads at `block` via `url`."""
    config = load_config(config_path)
    rpc = Rpc(config.chain.rpc_endpoints)
    try:
        reader = Reader(rpc, config.chain.multicall3, max_calls=config.chain.calls_per_batch,
                        max_gas=config.chain.gas_per_call, concurrency=config.chain.read_concurrency)  # fmt: skip
        protocols = {p.name: protocol_from_config(p) for p in config.protocols}
        for name, protocol in protocols.items():
            await protocol.resolve(reader, block)
            await protocol.discover(rpc, reader, sorted({t.account for t in targets if t.protocol == name}), block)
        chunks = list(plan_chunks(protocols, sorted(targets), config.chain.calls_per_batch))
    finally:
        await rpc.close()
    payloads = []
    for chunk in chunks:
        unique: dict[tuple[str, bytes], Call] = {}
        for _, plan in chunk:
            for call in plan.calls:
                unique.setdefault((call.target.lower(), call.data), call)
        payloads.append("0x" + encode_aggregate3(list(unique.values())).hex())
    limit = asyncio.Semaphore(config.chain.read_concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(data: str, number: int) -> None:
            body = {"jsonrpc": "2.0", "id": number, "method": "eth_call",
                    "params": [{"to": config.chain.multicall3, "data": data}, hex(block)]}  # fmt: skip
            async with limit, session.post(url, json=body) as response:
                answer = await response.read()
            if b'"error"' in answer[:200]:
                raise RuntimeError(f"the floor's eth_call {number} failed: {answer[:200]!r}")

        await asyncio.gather(*(one(data, i) for i, data in enumerate(payloads)))  # warms the connections
        passes = []
        for _ in range(repeats):
            started = time.perf_counter()
            await asyncio.gather(*(one(data, i) for i, data in enumerate(payloads)))
            passes.append(time.perf_counter() - started)
    return {"floor_s": round(statistics.median(passes), 4), "floor_best_s": round(min(passes), 4),
            "floor_eth_calls": len(payloads), "floor_passes": repeats}  # fmt: skip
