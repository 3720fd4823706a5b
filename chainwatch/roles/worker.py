"""The worker role (any number per chain): claims work chunks, reads their targets pinned at the chunk's block
through its own RPC endpoints, evaluates them, and in ONE transaction writes the levels, the outbox messages, the
targets' results (for the ingest) and the chunk's completion.

Nothing about alert state is trusted from memory: the levels of the chunk's positions are loaded inside that
transaction, locked `FOR UPDATE` (after each target's applied-block row, always in one order), so two workers on one
position are applied one after the other, and a result older than what was applied is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from collections.abc import Collection, Sequence

import asyncpg
import msgspec
import structlog

from chainwatch.alerts.directory import Directory, build_directory
from chainwatch.alerts.tracker import Tracker
from chainwatch.index import Target
from chainwatch.model import Level, PositionKey
from chainwatch.postgres_store import PostgresStore
from chainwatch.protocols.base import AccountReading, LendingProtocol
from chainwatch.protocols.registry import protocol_from_config
from chainwatch.read_pass import read_targets
from chainwatch.reader import ReadFailed, Reader
from chainwatch.roles import OUTBOX_CHANNEL, WATCHES_CHANNEL, WORK_CHANNEL, RoleContext
from chainwatch.roles.common import DONE_CHANNEL, listening, main, reader_for
from chainwatch.rpc import Rpc, RpcError
from chainwatch.store import ChatPosition, LevelChange, StoredLevel
from chainwatch import work_queue as wq

log = structlog.get_logger(__name__)

LEASE_SECONDS = 10.0
POLL_SECONDS = 1.0  # the safety net under NOTIFY
RETRY_FAILED_READ = 2.0


class _InTransaction:
    """The tracker's store, bound to the worker's open transaction: its writes commit with the chunk."""

    def __init__(self, store: PostgresStore, db: asyncpg.Connection) -> None:
        self._store, self._db = store, db

    async def record(self, changes: Sequence[LevelChange]) -> None:
        await self._store.record_in(self._db, changes)


class Worker:
    def __init__(self, context: RoleContext, *, lease_seconds: float = LEASE_SECONDS) -> None:
        store = context.store
        assert isinstance(store, PostgresStore), "the worker role needs PostgreSQL storage"
        self._context = context
        self._store = store
        self._chain = context.config.chain.chain_id
        self._lease = lease_seconds
        self._wake = asyncio.Event()
        self._directory: Directory | None = None
        self._protocols: dict[str, LendingProtocol] = {}
        self._discovered: set[Target] = set()
        self.chunks_done = 0

    async def run(self) -> None:
        config, stop = self._context.config, self._context.stop
        rpc = Rpc(config.chain.rpc_endpoints)
        try:
            reader = reader_for(config, rpc)
            self._protocols = {p.name: protocol_from_config(p) for p in config.protocols}
            head = await rpc.head()
            for protocol in self._protocols.values():
                await protocol.resolve(reader, head.number)
            await self._load_directory()
            stale_directory = asyncio.Event()

            def wake(channel: str) -> None:
                if channel == WATCHES_CHANNEL:
                    stale_directory.set()
                self._wake.set()

            async with listening(self._store_url(), self._chain, (WORK_CHANNEL, WATCHES_CHANNEL), wake):
                self._context.set_active(True)
                while not stop.is_set():
                    if stale_directory.is_set():
                        stale_directory.clear()
                        await self._load_directory()
                    chunk = await wq.claim(self._store.pool, self._chain, self._context.name, self._lease)
                    if chunk is None:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(POLL_SECONDS):
                                await _first(self._wake.wait(), stop.wait())
                        continue
                    await self._work_on(chunk, rpc, reader)
        finally:
            await rpc.close()

    def _store_url(self) -> str:
        url = self._context.config.storage.url
        return url.reveal() if url is not None else self._context.database_url

    async def _load_directory(self) -> None:
        self._directory = build_directory(self._context.config, await self._store.chats.setup())

    async def _work_on(self, chunk: wq.Chunk, rpc: Rpc, reader: Reader) -> None:
        renewing = asyncio.create_task(self._keep_leased(chunk))
        try:
            await self._discover(chunk, rpc, reader)
            outcomes = await read_targets(self._protocols, reader, chunk.targets, chunk.block_number)
        except (ReadFailed, RpcError) as error:
            renewing.cancel()
            log.error("worker.read_failed", block=chunk.block_number, chunk=chunk.seq, error=str(error))
            await wq.release(self._store.pool, chunk, RETRY_FAILED_READ)
            return
        try:
            if any(isinstance(outcome, ReadFailed) for _, outcome in outcomes):
                await wq.release(self._store.pool, chunk, RETRY_FAILED_READ)
                log.error("worker.read_partly_failed", block=chunk.block_number, chunk=chunk.seq)
                return
            read = {t: o for t, o in outcomes if isinstance(o, AccountReading)}
            await self._commit(chunk, await self._with_asset_lines(read, chunk.block_number, reader))
        except wq.LeaseLost as error:
            log.warning("worker.lease_lost", error=str(error))  # another worker has the chunk: its result counts
            return
        finally:
            renewing.cancel()
        self.chunks_done += 1

    async def _discover(self, chunk: wq.Chunk, rpc: Rpc, reader: Reader) -> None:
        """Finds the positions of accounts this worker has not read yet (protocols plan per discovered market)."""
        new = [t for t in chunk.targets if t not in self._discovered]
        for name, protocol in self._protocols.items():
            accounts = sorted({t.account for t in new if t.protocol == name})
            if accounts:
                await protocol.discover(rpc, reader, accounts, chunk.block_number)
        self._discovered.update(new)

    async def _keep_leased(self, chunk: wq.Chunk) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)  # a period, not synchronisation
            if not await wq.renew(self._store.pool, chunk, self._lease):
                return

    async def _with_asset_lines(self, read: dict[Target, AccountReading], block: int,
                                reader: Reader) -> dict[Target, AccountReading]:  # fmt: skip
        """As the single process does: alerts whose liquidation price the plain read cannot tell (several
        collaterals) carry a line per asset, read again in detail at the same block. Whether a reading would alert
        is judged on the stored levels without locking them: the commit judges again on the locked ones."""
        assert self._directory is not None
        plain = [r for o in read.values() for r in o.readings if r.has_debt and r.liquidation_price is None and not r.assets]
        if not plain:
            return read
        owners = {Target(protocol=r.key.protocol, account=r.key.account) for r in plain}
        async with self._store.pool.acquire() as db:
            levels = await _levels(db, self._chain, owners, lock=False)
        judge = Tracker(self._store, self._directory, levels, lambda: None)  # type: ignore[arg-type]
        wanted = {Target(protocol=r.key.protocol, account=r.key.account) for r in plain if judge.would_alert(r)}
        if not wanted:
            return read
        try:
            detailed = await read_targets(self._protocols, reader, wanted, block, detailed=True)
        except ReadFailed:
            return read  # the alert matters more than its detail: send it without
        better = {r.key: r for _, o in detailed if isinstance(o, AccountReading) for r in o.readings}
        return {t: msgspec.structs.replace(o, readings=tuple(better.get(r.key, r) for r in o.readings))
                for t, o in read.items()}  # fmt: skip

    async def _commit(self, chunk: wq.Chunk, read: dict[Target, AccountReading]) -> None:
        assert self._directory is not None
        block = chunk.block_number
        async with self._store.pool.acquire() as db, db.transaction():
            applied = await wq.lock_applied(db, self._chain, chunk.targets)
            fresh = {t: o for t, o in read.items() if applied.get(t, -1) < block}
            dropped = len(read) - len(fresh)
            levels = await _levels(db, self._chain, fresh, lock=True)
            tracker = Tracker(_InTransaction(self._store, db), self._directory, levels, lambda: None,  # type: ignore[arg-type]
                              buttons=self._context.config.bot_enabled)  # fmt: skip
            alerts = await tracker.observe([r for o in fresh.values() for r in o.readings])
            await wq.store_results(db, self._chain, [
                wq.TargetResult(target=t, block=block, exposure=o.exposure,
                                worst_health=min((r.health_factor for r in o.readings), default=math.inf),
                                partly_unread=bool(o.unreadable), read_again=o.read_again)
                for t, o in fresh.items()
            ])  # fmt: skip
            await wq.complete(db, chunk)
            # NOTIFY is transactional: the sender and the ingest hear of it only once it is committed.
            await db.execute("SELECT pg_notify($1, $3), pg_notify($2, $3)", OUTBOX_CHANNEL, DONE_CHANNEL,
                             str(self._chain))  # fmt: skip
        log.info("worker.chunk_done", block=block, chunk=chunk.seq, positions=len(fresh), alerts=len(alerts),
                 stale_dropped=dropped, attempt=chunk.attempt)  # fmt: skip


async def _levels(db: asyncpg.Connection, chain_id: int, targets: Collection[Target], *,
                  lock: bool) -> dict[ChatPosition, StoredLevel]:  # fmt: skip
    """The stored levels of `targets`' positions (`lock`: FOR UPDATE, in one order, until the transaction ends)."""
    ordered = sorted(targets)
    if not ordered:
        return {}
    rows = await db.fetch(
        "SELECT chat_id, protocol, account, market, level, health_factor, block FROM levels WHERE chain_id = $1 "
        "AND (protocol, account) IN (SELECT * FROM unnest($2::text[], $3::text[])) "
        "ORDER BY chat_id, protocol, account, market" + (" FOR UPDATE" if lock else ""),
        chain_id, [t.protocol for t in ordered], [t.account for t in ordered],
    )  # fmt: skip
    return {
        ChatPosition(chat_id=r[0], key=PositionKey(protocol=r[1], account=r[2], market=r[3])): StoredLevel(
            level=Level(r[4]), health_factor=r[5], block=r[6]
        )
        for r in rows
    }


async def _first(*waits: object) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def run(context: RoleContext) -> None:
    await Worker(context).run()


def _lease_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lease-seconds", type=float, default=LEASE_SECONDS,
                        help="how long a claimed chunk stays this worker's without renewal")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main("worker", lambda args: lambda context: Worker(context, lease_seconds=args.lease_seconds).run(),
                  arguments=_lease_argument))  # fmt: skip
