"""One active process per duty (a chain's ingest, a bot token's sender or poller), by a PostgreSQL advisory lock.

The lock is held on a connection of its own: when the holder dies its connection drops and PostgreSQL frees the
lock, so a standby polling for it takes over within `poll_seconds`. A holder whose connection is cut (a partition,
not a death) learns it from its liveness check and must stop at once; writes that only the holder may make check,
in their own transaction, that the lock is still held by the holder's backend (`fenced`), so a holder that has not
noticed yet cannot write after a standby took over.

A connection that goes silent without closing (a black-holed route: no FIN, no RST) would keep its backend, and the
lock, alive on the server for as long as the operating system's keepalive allows (hours). So the lock's session asks
the server to end it when idle for `SILENT_CHECKS` liveness periods (`idle_session_timeout`): the holder's watchdog
keeps it busy while the link works, and a silent holder's lock is freed within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

log = structlog.get_logger(__name__)

SILENT_CHECKS = 4  # missed liveness checks after which the server ends a holder's session and frees the lock


def lock_key(duty: str) -> int:
    """A stable signed 64-bit key for a duty name (e.g. "ingest:143"); a secret in it is hashed, never stored."""
    return int.from_bytes(hashlib.sha256(f"chainwatch:{duty}".encode()).digest()[:8], "big", signed=True)


def fence_key(duty: str) -> int:
    return lock_key(f"{duty}:fence")


class HeldByAnother(Exception):
    """The lock is held by a process that says (its `holder_tag`) it is not of our kind: waiting would be forever."""


class LeadershipLost(Exception):
    """The lock's connection failed: this process is no longer (provably) the active one."""


class Leadership:
    """The lock, once held. `lost` is set when the lock's connection stops answering."""

    def __init__(self, connection: asyncpg.Connection, key: int, duty: str) -> None:
        self.connection = connection
        self.key = key
        self.fence_key = fence_key(duty)
        self.duty = duty
        self.backend_pid: int = connection.get_server_pid()
        self.lost = asyncio.Event()

    async def fenced(self, db: asyncpg.Connection) -> None:
        """Inside a transaction on any connection: raises LeadershipLost unless our backend still holds the lock.

        The transaction also holds the duty's fence lock shared until it ends: a new holder waits for it (see
        `leadership`), so a write that passed this check is committed before the new holder reads or writes."""
        await db.execute("SELECT pg_advisory_xact_lock_shared($1)", self.fence_key)
        held = await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1 "
            "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $2)",
            self.backend_pid, self.key,
        )  # fmt: skip
        if not held:
            self.lost.set()
            raise LeadershipLost(f"{self.duty}: the lock is no longer held by this process")


@asynccontextmanager
async def leadership(
    url: str, duty: str, stop: asyncio.Event, *, poll_seconds: float = 0.5, check_seconds: float = 1.0,
    holder_tag: str | None = None,
) -> AsyncIterator[Leadership | None]:
    """Waits (as a standby) until this process holds `duty`'s lock, then yields it; yields None if `stop` is set
    first. While held, the connection is checked every `check_seconds`; on failure `Leadership.lost` is set and the
    caller must stop the duty's work (see `run_while_held`).

    `holder_tag` (short, no secret) names what kind of holder this is, e.g. which chain a bot token's sender
    drains; it is the lock session's application_name, so a standby sees the holder's. A standby whose tag differs
    from the holder's raises HeldByAnother instead of waiting behind a holder that never does its work."""
    key = lock_key(duty)
    connection: asyncpg.Connection | None = None
    try:
        while not stop.is_set():
            try:
                if connection is None or connection.is_closed():
                    settings = {"idle_session_timeout": str(max(1, round(max(check_seconds, poll_seconds) * SILENT_CHECKS * 1000)))}
                    if holder_tag is not None:
                        settings["application_name"] = holder_tag
                    connection = await asyncpg.connect(url, timeout=check_seconds * 5, server_settings=settings)
                if await connection.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    break
                if holder_tag is not None:
                    holder = await _holder_tag(connection, key)
                    if holder and holder != holder_tag:  # an older release tags nothing: wait for it
                        raise HeldByAnother(holder)
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
                log.warning("leadership.unreachable", duty=duty, reason=type(error).__name__)
                connection = None
            try:
                async with asyncio.timeout(poll_seconds):
                    await stop.wait()
            except TimeoutError:
                pass
        if stop.is_set() or connection is None:
            yield None
            return
        # Waits out the writes of a previous holder that passed `fenced` before it lost the lock; any later write of
        # theirs finds the lock ours.
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", fence_key(duty))
        held = Leadership(connection, key, duty)
        log.info("leadership.acquired", duty=duty)
        watchdog = asyncio.create_task(_watch(held, check_seconds))
        try:
            yield held
        finally:
            watchdog.cancel()
    finally:
        if connection is not None and not connection.is_closed():
            connection.terminate()  # frees the lock at once; a graceful close could hang on a cut socket


async def _holder_tag(connection: asyncpg.Connection, key: int) -> str | None:
    """The application_name of the session holding the advisory lock `key`; None if nobody holds it now."""
    return await connection.fetchval(  # type: ignore[no-any-return]
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
        key,
    )  # fmt: skip


async def _watch(held: Leadership, check_seconds: float) -> None:
    while True:
        await asyncio.sleep(check_seconds)  # a period, not synchronisation
        try:
            async with asyncio.timeout(check_seconds * 2):
                await held.connection.fetchval("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure of the lock's connection means the lock may be gone
            log.warning("leadership.lost", duty=held.duty)
            held.lost.set()
            return


async def run_while_held(held: Leadership, work: asyncio.Future[object] | asyncio.Task[object]) -> None:
    """Runs `work` until it ends or the lock is lost (then it is cancelled and LeadershipLost raised)."""
    lost = asyncio.create_task(held.lost.wait())
    try:
        done, _ = await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            work.result()
            return
        work.cancel()
        try:
            await work
        except asyncio.CancelledError:
            pass
        raise LeadershipLost(f"{held.duty}: lost the lock")
    finally:
        lost.cancel()
