"""The cluster's work queue in PostgreSQL: the ingest writes a block's targets as chunks, workers claim them.

Plain SQL, `FOR UPDATE SKIP LOCKED`: a claim is one UPDATE of the first claimable row, so concurrent claimers never
get the same chunk and never wait on each other. A claim is a lease (database clock, so machines' clocks do not
matter): a chunk whose worker died is claimable again once its lease ran out. Completion checks the claim is still
the worker's (same claimer, same attempt) inside the worker's transaction, so a worker that lost its lease cannot
commit its levels and messages beside the worker that took the chunk over.

Each target's row in `target_state` is the per-position "applied block": a result is applied only if its block is
newer, and the row is locked `FOR UPDATE` for the transaction, so two chunks of one target in flight are applied in
block order or the older one is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import asyncpg
import msgspec

from chainwatch.index import Target
from chainwatch.store import BlockRef

_TARGETS = msgspec.json.Decoder(tuple[Target, ...])
_EXPOSURE = msgspec.json.Decoder(frozenset[str])
_NOW = "extract(epoch from clock_timestamp())"
# How far back (in result sequence numbers) the ingest reads results again: a result's number is taken inside its
# transaction, so one that committed after a higher-numbered one would otherwise be skipped.
RESULT_LAG = 1_000


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    block_number: int
    block_hash: str
    seq: int
    targets: tuple[Target, ...]
    claimed_by: str
    attempt: int


class TargetResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker's read of one target found, for the ingest's index and risk order."""

    target: Target
    block: int
    exposure: frozenset[str]
    worst_health: float
    partly_unread: bool = False
    read_again: bool = False


class LeaseLost(Exception):
    """The chunk is no longer this worker's claim (its lease ran out and another worker took it)."""


def plan_chunks(riskiest_first: Sequence[Target], size: int, risk_of: dict[Target, float]) -> list[tuple[float, list[Target]]]:
    """Targets (riskiest first) in chunks of at most `size`, each with its riskiest health (inf when unknown)."""
    size = max(1, size)
    chunks = []
    for start in range(0, len(riskiest_first), size):
        part = list(riskiest_first[start : start + size])
        chunks.append((min((risk_of.get(t, math.inf) for t in part), default=math.inf), part))
    return chunks


async def enqueue(db: asyncpg.Connection, chain_id: int, block: BlockRef, chunks: Sequence[tuple[float, Sequence[Target]]],
                  written_by: str) -> int:  # fmt: skip
    """Writes `chunks` as work at `block` (call inside the transaction that saves the cursor); their seq continues
    after any chunk already written for that block. Returns how many were written."""
    if not chunks:
        return 0
    first = await db.fetchval(
        "SELECT COALESCE(MAX(seq) + 1, 0) FROM work_chunks WHERE chain_id = $1 AND block_hash = $2",
        chain_id, block.hash,
    )  # fmt: skip
    await db.executemany(
        "INSERT INTO work_chunks (chain_id, block_number, block_hash, seq, risk, targets, written_by, created_at) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7, {_NOW})",
        [(chain_id, block.number, block.hash, first + i, _finite(risk), msgspec.json.encode(tuple(targets), enc_hook=str),
          written_by) for i, (risk, targets) in enumerate(chunks)],
    )  # fmt: skip
    return len(chunks)


async def claim(db: asyncpg.Connection | asyncpg.Pool, chain_id: int, worker: str, lease_seconds: float) -> Chunk | None:
    """The next claimable chunk (oldest block first, riskiest chunk first within it), now leased to `worker`."""
    row = await db.fetchrow(
        f"UPDATE work_chunks SET state = 'claimed', claimed_by = $2, attempts = attempts + 1, lease_until = {_NOW} + $3 "
        "WHERE id = (SELECT id FROM work_chunks WHERE chain_id = $1 AND state <> 'done' "
        f"  AND (lease_until IS NULL OR lease_until < {_NOW}) "
        "  ORDER BY block_number, seq LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING id, block_number, block_hash, seq, targets, attempts",
        chain_id, worker, lease_seconds,
    )  # fmt: skip
    if row is None:
        return None
    return Chunk(id=row[0], block_number=row[1], block_hash=row[2], seq=row[3], targets=_TARGETS.decode(row[4]),
                 claimed_by=worker, attempt=row[5])  # fmt: skip


async def renew(db: asyncpg.Connection | asyncpg.Pool, chunk: Chunk, lease_seconds: float) -> bool:
    """Extends the lease; False when it is no longer ours."""
    status = await db.execute(
        f"UPDATE work_chunks SET lease_until = {_NOW} + $4 WHERE id = $1 AND claimed_by = $2 AND attempts = $3 "
        "AND state = 'claimed'",
        chunk.id, chunk.claimed_by, chunk.attempt, lease_seconds,
    )  # fmt: skip
    return status.endswith(" 1")


async def release(db: asyncpg.Connection | asyncpg.Pool, chunk: Chunk, retry_in: float) -> None:
    """Gives a chunk back (its read failed): claimable again after `retry_in` seconds, by anyone."""
    await db.execute(
        f"UPDATE work_chunks SET state = 'ready', claimed_by = NULL, lease_until = {_NOW} + $3 "
        "WHERE id = $1 AND attempts = $2 AND state = 'claimed'",
        chunk.id, chunk.attempt, retry_in,
    )  # fmt: skip


async def complete(db: asyncpg.Connection, chunk: Chunk) -> None:
    """Marks the chunk done, inside the worker's transaction; raises LeaseLost (roll back!) if it is not ours."""
    status = await db.execute(
        f"UPDATE work_chunks SET state = 'done', done_at = {_NOW} WHERE id = $1 AND claimed_by = $2 AND attempts = $3 "
        "AND state = 'claimed'",
        chunk.id, chunk.claimed_by, chunk.attempt,
    )  # fmt: skip
    if not status.endswith(" 1"):
        raise LeaseLost(f"work chunk {chunk.id} (block {chunk.block_number}) is no longer claimed by {chunk.claimed_by}")


async def lock_applied(db: asyncpg.Connection, chain_id: int, targets: Iterable[Target]) -> dict[Target, int]:
    """Inside a transaction: each target's applied block (-1 when never applied), its row locked until commit.

    Rows are created first (a no-op when they exist) and locked in one order, so two workers never deadlock."""
    ordered = sorted(set(targets))
    protocols, accounts = [t.protocol for t in ordered], [t.account for t in ordered]
    await db.execute(
        "INSERT INTO target_state (chain_id, protocol, account, applied_block, exposure, worst_health) "
        "SELECT $1, p, a, -1, '[]'::bytea, 1e308 FROM unnest($2::text[], $3::text[]) AS u(p, a) "
        "ORDER BY p, a ON CONFLICT DO NOTHING",
        chain_id, protocols, accounts,
    )  # fmt: skip
    rows = await db.fetch(
        "SELECT protocol, account, applied_block FROM target_state WHERE chain_id = $1 AND (protocol, account) IN "
        "(SELECT * FROM unnest($2::text[], $3::text[])) ORDER BY protocol, account FOR UPDATE",
        chain_id, protocols, accounts,
    )  # fmt: skip
    return {Target(protocol=r[0], account=r[1]): r[2] for r in rows}


async def store_results(db: asyncpg.Connection, chain_id: int, results: Sequence[TargetResult]) -> None:
    """Inside the transaction of `lock_applied`: the results' blocks become their targets' applied blocks."""
    await db.executemany(
        "UPDATE target_state SET applied_block = $4, exposure = $5, worst_health = $6, partly_unread = $7, "
        "read_again = $8, seq = nextval(pg_get_serial_sequence('target_state', 'seq')) "
        "WHERE chain_id = $1 AND protocol = $2 AND account = $3 AND applied_block < $4",
        [(chain_id, r.target.protocol, r.target.account, r.block, msgspec.json.encode(sorted(r.exposure), enc_hook=str),
          _finite(r.worst_health), r.partly_unread, r.read_again) for r in results],
    )  # fmt: skip


async def results_since(db: asyncpg.Connection | asyncpg.Pool, chain_id: int, seq: int) -> tuple[list[TargetResult], int]:
    """Results stored after sequence number `seq` (and up to RESULT_LAG before it); the highest number seen."""
    rows = await db.fetch(
        "SELECT protocol, account, applied_block, exposure, worst_health, partly_unread, read_again, seq "
        "FROM target_state WHERE chain_id = $1 AND seq > $2 AND applied_block >= 0 ORDER BY seq",
        chain_id, seq - RESULT_LAG,
    )  # fmt: skip
    results = [
        TargetResult(target=Target(protocol=r[0], account=r[1]), block=r[2], exposure=_EXPOSURE.decode(r[3]),
                     worst_health=r[4], partly_unread=r[5], read_again=r[6])  # fmt: skip
        for r in rows
    ]
    return results, max([seq, *(r[7] for r in rows)])


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 1e308
