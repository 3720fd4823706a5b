"""The scale benchmark's chain: N real Aave v3 positions opened through BulkPositions, built once and cached.

Half the positions hold WETH, half WBTC, all borrow USDC. Health is drawn from a seeded generator: most open
between 1.60 and 3.00, and an `EDGE` share of the WETH holders between 1.52 and 1.54, so that WETH falling
`PRICE_DROP` (3%) takes exactly those (about 1% of all positions) below warn (1.5) and no other. The built
chain is saved with `anvil_dumpState` under `~/.cache/chainwatch/bench-state/<key>/`, keyed by N, the seed and
the devnet's sources, and loaded with `--load-state` on the next run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

import aiohttp
import msgspec

from chainwatch.devnet.anvil import AnvilNode, anvil_binary, running_anvil
from chainwatch.devnet.bulk import BulkDevnet, BulkPosition, deploy_bulk, holder_address, open_bulk
from chainwatch.devnet.deploy import Devnet, deploy_devnet
from chainwatch.devnet.solc import CONTRACTS_DIR
from chainwatch.devnet.transactions import Rpc

WARN: Final = 1.5
CRITICAL: Final = 1.2
EDGE: Final = 0.02  # of the WETH holders: open just above warn, cross it on the price event
PRICE_DROP: Final = Decimal("0.03")
WETH_START: Final = 2000
# A block gas limit far above a real chain's, so that one transaction opens a thousand positions.
GAS_LIMIT: Final = 2_000_000_000
PER_TRANSACTION: Final = 1_000
# Anvil answers once the state is loaded; 100,000 positions take it longer than the default start-up wait.
LOAD_DEADLINE_S: Final = 300.0
_KEEP_BLOCKS: Final = 4
_DUMP_TIMEOUT_S: Final = 600.0
_DEVNET_SOURCES: Final = Path(__file__).resolve().parent.parent / "chainwatch" / "devnet"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chainwatch" / "bench-state"


class ChainMeta(msgspec.Struct, frozen=True, kw_only=True):
    devnet: Devnet
    bulk: BulkDevnet
    positions: int
    seed: int
    build_seconds: float


@dataclass(frozen=True)
class Chain:
    node: AnvilNode
    meta: ChainMeta
    plan: list[BulkPosition]
    accounts: list[str]
    built: bool  # False: loaded from the cache
    seconds: float  # to build, or to load
    state_mib: float


def plan_positions(count: int, seed: int) -> list[BulkPosition]:
    """Position i holds WETH when i is even, WBTC when odd; its opening health drawn from `seed`."""
    rng = random.Random(seed)
    plan = []
    for i in range(count):
        collateral = "WETH" if i % 2 == 0 else "WBTC"
        edge = collateral == "WETH" and rng.random() < EDGE
        health = rng.uniform(1.52, 1.54) if edge else rng.uniform(1.60, 3.00)
        plan.append(BulkPosition(collateral=collateral, health=Decimal(f"{health:.4f}")))
    return plan


def crossing_on_drop(plan: list[BulkPosition], drop: Decimal = PRICE_DROP, warn: float = WARN) -> list[int]:
    """Indices of the positions WETH falling by `drop` takes below warn (health scales with the price)."""
    return [i for i, p in enumerate(plan) if p.collateral == "WETH" and float(p.health * (1 - drop)) < warn]


def scenario_key(count: int, seed: int) -> str:
    """Changes with N, the seed, the devnet's sources and contracts, and the Anvil binary."""
    digest = hashlib.sha256(f"positions={count} seed={seed} gas={GAS_LIMIT} per_tx={PER_TRANSACTION}".encode())
    for path in sorted([*_DEVNET_SOURCES.glob("*.py"), *CONTRACTS_DIR.rglob("*.sol")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(anvil_binary().read_bytes()[:1_000_000])  # a new binary differs in its first MB
    return digest.hexdigest()[:16]


@asynccontextmanager
async def scale_chain(count: int, seed: int, *, rebuild: bool = False) -> AsyncIterator[Chain]:
    """An Anvil holding the scenario's chain: loaded from the cache, else built (and then cached)."""
    directory = cache_root() / scenario_key(count, seed)
    state, meta_file = directory / "state.json", directory / "meta.json"
    plan = plan_positions(count, seed)
    if rebuild:
        shutil.rmtree(directory, ignore_errors=True)
    if state.is_file() and meta_file.is_file():
        meta = msgspec.json.decode(meta_file.read_bytes(), type=ChainMeta)
        started = time.monotonic()
        args = ["--gas-limit", str(GAS_LIMIT), "--load-state", str(state)]
        async with running_anvil(extra_args=args, ready_deadline=LOAD_DEADLINE_S) as node:
            seconds = time.monotonic() - started
            yield Chain(node=node, meta=meta, plan=plan, accounts=_accounts(meta.bulk, count), built=False,
                        seconds=seconds, state_mib=state.stat().st_size / 2**20)  # fmt: skip
        return
    started = time.monotonic()
    # Anvil keeps every mined transaction with its full call trace in memory (12 GB at N=100,000, and a dump too
    # large to return): only the last blocks' are kept, and empty blocks mined at the end push the bulk ones out.
    keeper = ["--transaction-block-keeper", str(_KEEP_BLOCKS)]
    async with running_anvil(extra_args=["--gas-limit", str(GAS_LIMIT), *keeper]) as node:
        devnet = await deploy_devnet(node.http_url)
        bulk = await deploy_bulk(node.http_url)
        accounts = await open_bulk(node.http_url, devnet, bulk, plan, per_transaction=PER_TRANSACTION)
        rpc = Rpc(node.http_url)
        try:
            for _ in range(_KEEP_BLOCKS + 1):
                await rpc.call("evm_mine")
        finally:
            await rpc.aclose()
        seconds = time.monotonic() - started
        meta = ChainMeta(devnet=devnet, bulk=bulk, positions=count, seed=seed, build_seconds=seconds)
        size = await _dump(node.http_url, directory, meta)
        yield Chain(node=node, meta=meta, plan=plan, accounts=[str(a) for a in accounts], built=True,
                    seconds=seconds, state_mib=size / 2**20)  # fmt: skip


def _accounts(bulk: BulkDevnet, count: int) -> list[str]:
    return [str(holder_address(bulk.opener, i, bulk.holder)) for i in range(count)]


async def _dump(http_url: str, directory: Path, meta: ChainMeta) -> int:
    """Writes the node's state as `--load-state` reads it (plain JSON) and the scenario beside it; its size."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "anvil_dumpState", "params": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_DUMP_TIMEOUT_S)) as session:
        async with session.post(http_url, json=request) as response:
            answer = await response.json()
    if "error" in answer:
        raise RuntimeError(f"anvil_dumpState failed: {answer['error']}")
    dumped: str = answer["result"]
    state = json.loads(gzip.decompress(bytes.fromhex(dumped.removeprefix("0x"))))
    # The mined transactions carry their full call traces: 48 of the 50 MB at N=1,000. Nothing here reads past
    # transactions, and Anvil loads a state without them.
    state["transactions"] = []
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"state.{os.getpid()}.tmp"
    partial.write_text(json.dumps(state))
    partial.replace(directory / "state.json")
    (directory / "meta.json").write_bytes(msgspec.json.encode(meta))
    return (directory / "state.json").stat().st_size
