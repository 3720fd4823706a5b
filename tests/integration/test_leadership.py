"""One active holder per duty, on a real PostgreSQL server: standby takeover, fencing after loss."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from chainwatch.leadership import LeadershipLost, leadership, lock_key

pytestmark = pytest.mark.asyncio


async def test_a_standby_waits_and_takes_over_when_the_holder_lets_go(postgres_url: str) -> None:
    stop = asyncio.Event()
    async with leadership(postgres_url, "ingest:1", stop, poll_seconds=0.05) as first:
        assert first is not None
        async with first.connection.transaction():
            await first.fenced(first.connection)
        standby_entered = asyncio.Event()

        async def standby() -> None:
            async with leadership(postgres_url, "ingest:1", stop, poll_seconds=0.05) as second:
                assert second is not None
                standby_entered.set()

        waiting = asyncio.create_task(standby())
        admin = await asyncpg.connect(postgres_url)
        try:  # while the first holds it, nobody else gets the lock
            assert not await admin.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("ingest:1"))
        finally:
            await admin.close()
        assert not standby_entered.is_set()
    async with asyncio.timeout(5):
        await standby_entered.wait()
        await waiting


async def test_other_duties_do_not_block_each_other(postgres_url: str) -> None:
    stop = asyncio.Event()
    async with leadership(postgres_url, "ingest:1", stop) as a, leadership(postgres_url, "ingest:2", stop) as b:
        assert a is not None and b is not None and a.key != b.key


async def test_a_holder_whose_backend_is_gone_cannot_pass_the_fence(postgres_url: str) -> None:
    stop = asyncio.Event()
    async with leadership(postgres_url, "sender:x", stop, check_seconds=0.1) as held:
        assert held is not None
        admin = await asyncpg.connect(postgres_url)
        try:
            # The server ends the holder's backend (as when a partition is noticed): the lock is freed with it.
            await admin.execute("SELECT pg_terminate_backend($1)", held.backend_pid)
            async with asyncio.timeout(5):  # termination is a signal: wait until the backend (and its lock) is gone
                while await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", held.backend_pid):
                    await asyncio.sleep(0.01)
            async with admin.transaction():
                with pytest.raises(LeadershipLost):
                    await held.fenced(admin)
            assert await admin.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("sender:x"))
        finally:
            await admin.close()
        async with asyncio.timeout(5):
            await held.lost.wait()


async def test_stop_while_waiting_yields_none(postgres_url: str) -> None:
    stop = asyncio.Event()
    async with leadership(postgres_url, "bot:y", stop) as held:
        assert held is not None
        stop.set()
        async with leadership(postgres_url, "bot:y", stop) as other:
            assert other is None


async def test_a_new_holder_waits_for_the_old_holders_fenced_write_to_commit(postgres_url: str) -> None:
    """The old holder passed `fenced` and lost the lock before committing: the standby holds the lock but does
    not start until that write is committed, and any later write of the old holder is refused."""
    stop = asyncio.Event()
    writer = await asyncpg.connect(postgres_url)
    admin = await asyncpg.connect(postgres_url)
    try:
        async with leadership(postgres_url, "ingest:fence", stop, poll_seconds=0.05) as old:
            assert old is not None
            in_flight = writer.transaction()
            await in_flight.start()
            await old.fenced(writer)
            old.connection.terminate()  # the lock goes with its connection; the write is still open
            entered = asyncio.Event()

            async def standby() -> None:
                async with leadership(postgres_url, "ingest:fence", stop, poll_seconds=0.05) as new:
                    assert new is not None
                    entered.set()
                    await stop.wait()

            waiting = asyncio.create_task(standby())
            async with asyncio.timeout(5):  # the standby got the lock and now waits on the fence
                while not await admin.fetchval("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' "
                                               "AND NOT granted"):  # fmt: skip
                    await asyncio.sleep(0.02)
            assert not entered.is_set()
            await in_flight.commit()
            async with asyncio.timeout(5):
                await entered.wait()
            with pytest.raises(LeadershipLost):
                async with writer.transaction():
                    await old.fenced(writer)
            stop.set()
            await waiting
    finally:
        await writer.close()
        await admin.close()
