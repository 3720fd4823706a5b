"""The work queue on a real PostgreSQL: claims, leases, completion in the worker's transaction, stale results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from chainwatch import work_queue as wq
from chainwatch.index import Target
from chainwatch.postgres_schema import migrate
from chainwatch.store import BlockRef
from tests.integration.test_store_port import fresh_database

CHAIN = 143


def target(n: int) -> Target:
    return Target(protocol="aave_v3", account=f"0x{n:040x}")


@pytest.fixture
async def pool(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    url = await fresh_database(postgres_url)
    async with asyncpg.create_pool(url, min_size=1, max_size=12) as p:
        async with p.acquire() as db:
            await migrate(db)
        yield p


async def write(pool: asyncpg.Pool, number: int, chunks: list[list[Target]], *, by: str = "ingest-a") -> None:
    async with pool.acquire() as db, db.transaction():
        await wq.enqueue(db, CHAIN, BlockRef(number=number, hash=f"0x{number:064x}"), [(1.0, c) for c in chunks], by)


def test_chunks_keep_the_riskiest_first_and_know_their_riskiest_health() -> None:
    targets = [target(i) for i in range(5)]
    chunks = wq.plan_chunks(targets, 2, {targets[0]: 1.1, targets[3]: 1.4})
    assert [(risk, [t.account[-1] for t in part]) for risk, part in chunks] == [
        (1.1, ["0", "1"]), (1.4, ["2", "3"]), (float("inf"), ["4"])]  # fmt: skip


async def test_claims_go_oldest_block_first_then_by_chunk_and_carry_the_targets(pool: asyncpg.Pool) -> None:
    await write(pool, 11, [[target(3)]])
    await write(pool, 10, [[target(1), target(2)], [target(9)]])
    first = await wq.claim(pool, CHAIN, "w1", 10)
    second = await wq.claim(pool, CHAIN, "w1", 10)
    third = await wq.claim(pool, CHAIN, "w1", 10)
    assert first and second and third
    assert [(c.block_number, c.seq) for c in (first, second, third)] == [(10, 0), (10, 1), (11, 0)]
    assert first.targets == (target(1), target(2))
    assert await wq.claim(pool, CHAIN, "w1", 10) is None
    assert await wq.claim(pool, CHAIN + 1, "w1", 10) is None  # another chain's workers see none of it


async def test_a_block_written_again_continues_its_seq_and_the_same_seq_twice_is_refused(pool: asyncpg.Pool) -> None:
    await write(pool, 10, [[target(1)]])
    await write(pool, 10, [[target(2)]])
    async with pool.acquire() as db:
        assert [r[0] for r in await db.fetch("SELECT seq FROM work_chunks ORDER BY seq")] == [0, 1]
        with pytest.raises(asyncpg.UniqueViolationError):
            await db.execute(
                "INSERT INTO work_chunks (chain_id, block_number, block_hash, seq, risk, targets, written_by, "
                "created_at) VALUES ($1, 10, $2, 0, 1, '[]', 'ingest-b', 0)", CHAIN, f"0x{10:064x}")  # fmt: skip


async def test_concurrent_claimers_never_get_the_same_chunk(pool: asyncpg.Pool) -> None:
    await write(pool, 10, [[target(i)] for i in range(40)])

    async def claimer(name: str) -> list[int]:
        got = []
        while (chunk := await wq.claim(pool, CHAIN, name, 10)) is not None:
            got.append(chunk.id)
        return got

    claimed = await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    every = [chunk_id for ids in claimed for chunk_id in ids]
    assert len(every) == 40 and len(set(every)) == 40


async def test_an_expired_lease_is_claimed_again_and_the_first_claimer_cannot_complete(pool: asyncpg.Pool) -> None:
    await write(pool, 10, [[target(1)]])
    lost = await wq.claim(pool, CHAIN, "dead", 0.2)
    assert lost is not None
    assert await wq.claim(pool, CHAIN, "w2", 10) is None  # leased: nobody else may take it yet
    async with asyncio.timeout(10):
        while (again := await wq.claim(pool, CHAIN, "w2", 10)) is None:
            await asyncio.sleep(0.05)  # polling the condition "the lease ran out"
    assert again.id == lost.id and again.attempt == lost.attempt + 1
    assert not await wq.renew(pool, lost, 10)
    async with pool.acquire() as db:
        with pytest.raises(wq.LeaseLost):
            async with db.transaction():
                await wq.complete(db, lost)
        async with db.transaction():
            await wq.complete(db, again)
        assert await db.fetchval("SELECT state FROM work_chunks WHERE id = $1", again.id) == "done"
    assert await wq.claim(pool, CHAIN, "w3", 0.01) is None


async def test_renewing_keeps_the_chunk_and_a_released_one_is_claimable_after_its_delay(pool: asyncpg.Pool) -> None:
    await write(pool, 10, [[target(1)]])
    chunk = await wq.claim(pool, CHAIN, "w1", 0.3)
    assert chunk is not None
    assert await wq.renew(pool, chunk, 30)
    await asyncio.sleep(0.5)  # longer than the first lease: the renewal must be what keeps it
    assert await wq.claim(pool, CHAIN, "w2", 10) is None
    await wq.release(pool, chunk, 0)
    again = await wq.claim(pool, CHAIN, "w2", 10)
    assert again is not None and again.id == chunk.id


async def test_a_rolled_back_completion_leaves_the_chunk_to_be_claimed_again(pool: asyncpg.Pool) -> None:
    await write(pool, 10, [[target(1)]])
    chunk = await wq.claim(pool, CHAIN, "w1", 0.2)
    assert chunk is not None
    async with pool.acquire() as db:
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await wq.complete(db, chunk)
                raise RuntimeError("the worker died before commit")
    async with asyncio.timeout(10):
        while (again := await wq.claim(pool, CHAIN, "w2", 10)) is None:
            await asyncio.sleep(0.05)
    assert again.id == chunk.id


async def test_only_a_newer_block_is_applied_and_the_ingest_reads_results_back(pool: asyncpg.Pool) -> None:
    one, two = target(1), target(2)

    async def apply(block: int, *targets: Target) -> set[Target]:
        async with pool.acquire() as db, db.transaction():
            applied = await wq.lock_applied(db, CHAIN, targets)
            fresh = {t for t in targets if applied[t] < block}
            await wq.store_results(db, CHAIN, [wq.TargetResult(target=t, block=block, exposure=frozenset({"WETH"}),
                                                               worst_health=1.0 + block / 100) for t in fresh])  # fmt: skip
            return fresh

    assert await apply(20, one) == {one}
    assert await apply(19, one, two) == {two}  # one's level is at block 20: block 19 must not move it back
    assert await apply(20, one) == set()  # the same block again (a lease taken over) is not applied twice
    results, seq = await wq.results_since(pool, CHAIN, 0)
    assert {(r.target, r.block, r.exposure) for r in results} == {(one, 20, frozenset({"WETH"})),
                                                                   (two, 19, frozenset({"WETH"}))}  # fmt: skip
    assert await apply(21, two) == {two}
    newer, _ = await wq.results_since(pool, CHAIN, seq + wq.RESULT_LAG)
    assert [(r.target, r.block) for r in newer] == [(two, 21)]


async def test_two_workers_on_one_target_are_applied_one_after_the_other(pool: asyncpg.Pool) -> None:
    """The second transaction waits for the first's row lock, then sees its block and drops the older result."""
    one = target(1)
    async with pool.acquire() as first, pool.acquire() as second:
        tx1 = first.transaction()
        await tx1.start()
        assert await wq.lock_applied(first, CHAIN, [one]) == {one: -1}
        tx2 = second.transaction()
        await tx2.start()
        waiting = asyncio.create_task(wq.lock_applied(second, CHAIN, [one]))
        await wq.store_results(first, CHAIN, [wq.TargetResult(target=one, block=30, exposure=frozenset(),
                                                              worst_health=2.0)])  # fmt: skip
        assert not waiting.done()
        await tx1.commit()
        assert await waiting == {one: 30}
        await tx2.rollback()
