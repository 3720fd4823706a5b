"""Open many real Aave v3 positions fast, through the devnet-only BulkPositions contract (benchmarks only).

Each position is a clone of PositionHolder that mints its collateral, supplies it and borrows USDC for itself on
the devnet's real Pool, hundreds to a transaction. Which health each position gets is the caller's plan
(`BulkPosition`); this module turns it into amounts and transactions, and knows the clones' addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Final

import msgspec
from eth_typing import ChecksumAddress
from eth_utils import keccak
from web3 import Web3

from chainwatch.devnet.artifacts import Artifact
from chainwatch.devnet.common import ADMIN_ACCOUNT_INDEX, ASSETS
from chainwatch.devnet.deploy import Devnet
from chainwatch.devnet.solc import CONTRACTS_DIR, compile_cached
from chainwatch.devnet.transactions import Rpc, TxPlan, execute

# Measured on Anvil 1.7.1: clone, mint, approve, supply and borrow of one position use about 480k gas; a margin
# covers the first positions of a reserve (cold storage).
GAS_PER_POSITION: Final = 650_000
_SOURCE: Final = "BulkPositions.sol"
# One collateral per position, priced in USD, borrowing USDC: health = collateral * price * threshold / debt.
_COLLATERAL_UNITS: Final = {"WETH": Decimal(1), "WBTC": Decimal("0.05")}
_SPECS: Final = {spec.symbol: spec for spec in ASSETS}


class BulkPosition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One planned position: its collateral (WETH or WBTC, fixed amount) and the health it opens at."""

    collateral: str
    health: Decimal


class BulkDevnet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    opener: str  # the BulkPositions contract
    holder: str  # the PositionHolder every clone delegates to


async def compile_bulk() -> dict[str, Artifact]:
    """BulkPositions and PositionHolder, compiled apart from the other own contracts (only benchmarks use them)."""
    sources = {_SOURCE: (CONTRACTS_DIR / _SOURCE).read_text()}
    return await compile_cached("bulk", sources, {"BulkPositions": _SOURCE, "PositionHolder": _SOURCE})


def amounts(position: BulkPosition) -> tuple[int, int]:
    """(collateral supplied, USDC borrowed) in token units, for the health planned at the devnet's start prices."""
    spec, usdc = _SPECS[position.collateral], _SPECS["USDC"]
    units = _COLLATERAL_UNITS[position.collateral]
    weighted_usd = units * spec.price_usd * spec.liquidation_threshold_bps / 10_000
    debt = weighted_usd / usdc.price_usd / position.health
    return int(units * 10**spec.decimals), int(debt * 10**usdc.decimals)


def holder_address(opener: str, salt: int, holder: str) -> ChecksumAddress:
    """The CREATE2 address of clone `salt` (what `BulkPositions.holderAt` returns), computed without a call."""
    code = bytes.fromhex("3d602d80600a3d3981f3363d3d373d3d3d363d73") + bytes.fromhex(holder[2:])
    code += bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
    digest = keccak(b"\xff" + bytes.fromhex(opener[2:]) + salt.to_bytes(32, "big") + keccak(code))
    return Web3.to_checksum_address(digest[12:])


async def deploy_bulk(http_url: str) -> BulkDevnet:
    artifacts = await compile_bulk()
    rpc = Rpc(http_url)
    try:
        admin = Web3.to_checksum_address((await rpc.call("eth_accounts"))[ADMIN_ACCOUNT_INDEX])
        plan = await TxPlan.for_senders(rpc, [admin])
        opener = plan.deploy("deploy BulkPositions", admin, artifacts["BulkPositions"].creation_code())
        await execute(rpc, plan.txs)
        result = await rpc.call("eth_call", {"to": opener, "data": artifacts["BulkPositions"].calldata("holder")})
    finally:
        await rpc.aclose()
    return BulkDevnet(opener=opener, holder=Web3.to_checksum_address("0x" + result[-40:]))


async def open_bulk(
    http_url: str, devnet: Devnet, bulk: BulkDevnet, positions: Sequence[BulkPosition], *, first_salt: int = 0,
    per_transaction: int = 200,
) -> list[ChecksumAddress]:  # fmt: skip
    """Opens `positions` as clones `first_salt`, `first_salt + 1`, ...; their addresses in the same order.

    `per_transaction` positions go in each transaction, so its gas (GAS_PER_POSITION each) must fit the node's
    block gas limit: a larger `--gas-limit` on Anvil lets more go at once.
    """
    opener = (await compile_bulk())["BulkPositions"]
    reserves = devnet.aave_v3.reserves
    rpc = Rpc(http_url)
    try:
        admin = Web3.to_checksum_address((await rpc.call("eth_accounts"))[ADMIN_ACCOUNT_INDEX])
        plan = await TxPlan.for_senders(rpc, [admin])
        for start in range(0, len(positions), per_transaction):
            part = positions[start : start + per_transaction]
            specs = []
            for position in part:
                supplied, borrowed = amounts(position)
                specs.append((reserves[position.collateral].asset, supplied, reserves["USDC"].asset, borrowed))
            salt = first_salt + start
            plan.call(f"open positions {salt}..{salt + len(part) - 1}", admin, bulk.opener,
                      opener.calldata("open", devnet.aave_v3.pool, salt, specs), gas=GAS_PER_POSITION * len(part))  # fmt: skip
        await execute(rpc, plan.txs)
    finally:
        await rpc.aclose()
    return [holder_address(bulk.opener, first_salt + i, bulk.holder) for i in range(len(positions))]
