"""A store link that goes silent without closing (black-holed: no FIN, no RST): the server must not keep the
silent process's lock or row locks alive, or a standby never takes over and other workers wait forever."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from chainwatch.leadership import LeadershipLost, leadership
from chainwatch.postgres_store import open_postgres_store
from tests.support.pgforward import forwarding

pytestmark = pytest.mark.asyncio

DEADLINE = 15.0


async def test_a_standby_takes_over_from_a_holder_whose_link_went_silent(postgres_url: str) -> None:
    stop = asyncio.Event()
    async with forwarding(postgres_url) as link:
        async with leadership(link.url(postgres_url), "ingest:77", stop, poll_seconds=0.05, check_seconds=0.25) as held:
            assert held is not None
            link.black_hole()
            async with asyncio.timeout(DEADLINE):  # the holder learns it from its own liveness check
                await held.lost.wait()
            async with asyncio.timeout(DEADLINE):  # and the server frees the lock of the session it no longer hears
                async with leadership(postgres_url, "ingest:77", stop, poll_seconds=0.05) as standby:
                    assert standby is not None
                    admin = await asyncpg.connect(postgres_url)
                    try:
                        async with admin.transaction():
                            with pytest.raises(LeadershipLost):
                                await held.fenced(admin)  # the silent holder can no longer pass the fence
                        async with admin.transaction():
                            await standby.fenced(admin)
                    finally:
                        await admin.close()
            link.cut()  # lets the silent holder's connection fail at once instead of hanging on the way out


async def test_a_silent_transaction_does_not_hold_its_locks_for_ever(postgres_url: str) -> None:
    key = 7_700_077
    locked = asyncio.Event()
    async with forwarding(postgres_url) as link:
        async with open_postgres_store(link.url(postgres_url), 77, idle_in_transaction_seconds=0.5) as store:

            async def silent_worker() -> None:
                async with store.pool.acquire() as db:
                    await db.execute("BEGIN")
                    await db.execute("SELECT pg_advisory_xact_lock($1)", key)  # as a worker's FOR UPDATE rows
                    locked.set()
                    await asyncio.Event().wait()

            worker = asyncio.create_task(silent_worker())
            async with asyncio.timeout(DEADLINE):
                await locked.wait()
            link.black_hole()
            other = await asyncpg.connect(postgres_url)
            try:
                async with asyncio.timeout(DEADLINE):  # blocks until the server ends the silent transaction
                    async with other.transaction():
                        await other.execute("SELECT pg_advisory_xact_lock($1)", key)
            finally:
                await other.close()
            link.cut()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
                await worker


async def test_a_statement_on_a_silent_link_fails_instead_of_hanging_its_caller(postgres_url: str) -> None:
    async with forwarding(postgres_url) as link:
        async with open_postgres_store(link.url(postgres_url), 78, command_timeout_seconds=0.5) as store:
            await store.cursor()  # the link works
            link.black_hole()
            async with asyncio.timeout(DEADLINE):  # a hang ends here as a failure (cancelled, not caught below)
                with pytest.raises(OSError) as failed:  # as every role's store-failure path takes it
                    await store.cursor()
            assert isinstance(failed.value, TimeoutError)
            link.cut()
