"""The ingest role (one active per chain, standbys wait): blocks and events -> work chunks for the workers.

It runs the single process's Engine (index, refresh tiers, reorgs) with one change of strategy: a block's marked
targets are not read here but written as chunks, riskiest first, in the transaction that saves the cursor, fenced by
the leadership lock in that same transaction. What workers read (exposure, health) comes back through
`target_state` and is booked in the Engine as if read here. A standby that takes over starts as a restart does:
from the stored cursor and results, with every target enqueued at its first block.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Collection
from typing import Any

import structlog

from chainwatch import work_queue as wq
from chainwatch.alerts.directory import Directory, build_directory
from chainwatch.alerts.tracker import Tracker
from chainwatch.chain import Head
from chainwatch.engine_commands import Mail, WatchesChanged
from chainwatch.index import Target
from chainwatch.leadership import Leadership, LeadershipLost, leadership, run_while_held
from chainwatch.listeners.websocket import ChainListener
from chainwatch.postgres_store import PostgresStore
from chainwatch.protocols.registry import protocol_from_config
from chainwatch.recompute import Engine
from chainwatch.roles import WATCHES_CHANNEL, WORK_CHANNEL, RoleContext
from chainwatch.roles.common import DONE_CHANNEL, listening, main, reader_for
from chainwatch.rpc import Rpc
from chainwatch.store import BlockRef

log = structlog.get_logger(__name__)

RESULTS_POLL_SECONDS = 1.0
FIRST_READS_STALL_SECONDS = 60.0  # no worker result for this long: a chunk cannot complete, stop waiting on it


class WorkSink:
    """Collects a block's marked targets; `save_cursor` writes them as chunks with the cursor, fenced, at once."""

    def __init__(self, store: PostgresStore, held: Leadership, name: str, chunk_size: int) -> None:
        self._store = store
        self._held = held
        self._name = name
        self._chunk_size = chunk_size
        self._marked: set[Target] = set()
        self.risk: dict[Target, float] = {}  # lowest health a worker last read, for riskiest first

    async def track(self, targets: Collection[Target], block: int) -> None:
        self._marked |= set(targets)

    async def save_cursor(self, block: BlockRef) -> None:
        riskiest = sorted(self._marked, key=lambda t: (self.risk.get(t, math.inf), t))
        chunks = wq.plan_chunks(riskiest, self._chunk_size, self.risk)
        chain = self._store.chain_id
        async with self._store.pool.acquire() as db, db.transaction():
            await self._held.fenced(db)
            written = await wq.enqueue(db, chain, block, chunks, self._name)
            await self._store.save_cursor_in(db, block)
            if written:
                await db.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, str(chain))
        self._marked.clear()
        if written:
            log.info("ingest.work_written", block=block.number, chunks=written, positions=len(riskiest))


class _CursorThroughSink:
    """The Engine's store: everything as the real store, but the cursor goes with the block's work."""

    def __init__(self, store: PostgresStore, sink: WorkSink) -> None:
        self._store, self._sink = store, sink

    async def save_cursor(self, block: BlockRef) -> None:
        await self._sink.save_cursor(block)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def run(context: RoleContext) -> None:
    """Stands by for the chain's ingest lock; while held, ingests; a lost lock sends it back to standing by."""
    duty = f"ingest:{context.config.chain.chain_id}"
    while not context.stop.is_set():
        async with leadership(context.database_url, duty, context.stop) as held:
            if held is None:
                return
            context.set_active(True)
            work = asyncio.ensure_future(_ingest(context, held))
            stopping = asyncio.ensure_future(context.stop.wait())
            waiter = asyncio.ensure_future(run_while_held(held, work))
            try:
                done, _ = await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    waiter.result()
                else:
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
                        await waiter
            except* LeadershipLost as lost:
                # Fenced (a write found the lock gone) or the lock's connection failed: stand by again.
                log.warning("ingest.fenced", duty=duty, error=str(lost.exceptions[0]))
            finally:
                stopping.cancel()
                context.set_active(False)


async def _ingest(context: RoleContext, held: Leadership) -> None:
    config, store = context.config, context.store
    assert isinstance(store, PostgresStore), "the ingest role needs PostgreSQL storage"
    chain = config.chain.chain_id
    rpc = Rpc(config.chain.rpc_endpoints)
    try:
        reader = reader_for(config, rpc)
        sink = WorkSink(store, held, context.name, config.chain.calls_per_batch)

        async def load_directory() -> Directory:
            return build_directory(config, await store.chats.setup())

        directory = await load_directory()
        tracker = await Tracker.load(store, directory, lambda: None)
        protocols = {p.name: protocol_from_config(p) for p in config.protocols}
        engine = Engine(
            protocols, directory.targets(), reader, tracker, _CursorThroughSink(store, sink),  # type: ignore[arg-type]
            refresh=config.refresh, load_directory=load_directory, max_reorg_depth=config.chain.max_reorg_depth,
            unpriced_after=config.alerts.unpriced_after, track=sink.track,
        )  # fmt: skip
        seen = await _book_results(engine, sink, store, chain, 0)
        cursor = await store.cursor()
        head = await _head_past(rpc, cursor, context.stop)
        if head is None:
            return
        await engine.start(head, rpc)
        log.info("ingest.started", block=head.number, resumed_after=None if cursor is None else cursor.number,
                 positions=engine.watched_count(), name=context.name)  # fmt: skip
        seen = await _await_first_reads(engine, sink, store, chain, seen, context.stop)
        mailbox: asyncio.Queue[Mail] = asyncio.Queue()
        results_due = asyncio.Event()

        def wake(channel: str) -> None:
            if channel == WATCHES_CHANNEL:
                mailbox.put_nowait(WatchesChanged(reply=asyncio.get_running_loop().create_future()))
            else:
                results_due.set()

        listener = ChainListener(
            config.chain.ws_urls, rpc, mailbox,  # type: ignore[arg-type]
            log_filter=engine.log_filter, resume_from=engine.resume_from,
            max_log_range=config.chain.max_log_range, stall_seconds=config.chain.stall_seconds,
            primary_probe_seconds=config.chain.primary_probe_seconds,
        )  # fmt: skip
        engine.on_sources_changed = listener.reconnect
        url = config.storage.url.reveal() if config.storage.url is not None else context.database_url
        async with listening(url, chain, (DONE_CHANNEL, WATCHES_CHANNEL), wake), asyncio.TaskGroup() as group:
            group.create_task(listener.run())
            group.create_task(engine.run(mailbox))
            while True:
                results_due.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESULTS_POLL_SECONDS):
                        await results_due.wait()
                seen = await _book_results(engine, sink, store, chain, seen)
    finally:
        await rpc.close()


async def _book_results(engine: Engine, sink: WorkSink, store: PostgresStore, chain: int, seen: int) -> int:
    """Books the workers' results since `seen` in the Engine (exposure, read marks, tiers) and the risk order.

    Called between the Engine's awaits and without one of its own in between, so it never interleaves a pass."""
    results, newest = await wq.results_since(store.pool, chain, seen)
    for result in results:
        sink.risk[result.target] = result.worst_health
        engine.take_result(result.target, result.block, result.exposure, result.worst_health,
                           partly_unread=result.partly_unread, read_again=result.read_again)  # fmt: skip
    if newest > seen:
        log.info("ingest.results_booked", seq=newest, known=len(sink.risk))
    return newest


async def _await_first_reads(engine: Engine, sink: WorkSink, store: PostgresStore, chain: int, seen: int,
                             stop: asyncio.Event) -> int:  # fmt: skip
    """Books the workers' first reads of never-read targets before the ingest listens to the chain.

    Until a target's first read is back, nothing says which assets it holds, so a price event would mark nobody and
    the position would miss that block's move (read only at its start block, before the move). The single process
    reads everything before it listens; this is the same order: the listener starts after, and its backfill from
    the cursor (the start block) hears those events with every exposure known. A standby taking over has the stored
    results and waits only for targets that never had one. Gives up, with a warning, once no result has come for
    FIRST_READS_STALL_SECONDS (a chunk that cannot complete must not stall every block): those targets are then
    marked from their reads' results once they come."""
    unread = engine.never_read()
    waited_for = len(unread)
    quiet_since = time.monotonic()
    while unread and not stop.is_set():
        if time.monotonic() - quiet_since > FIRST_READS_STALL_SECONDS:
            log.warning("ingest.first_reads_incomplete", unread=len(unread), waited_s=FIRST_READS_STALL_SECONDS)
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await stop.wait()  # a poll period; results wake nobody here, the listener is not started yet
        newest = await _book_results(engine, sink, store, chain, seen)
        if newest > seen:
            seen, quiet_since = newest, time.monotonic()
            unread = engine.never_read()
    if waited_for and not unread:
        log.info("ingest.first_reads_booked", positions=waited_for)
    return seen


async def _head_past(rpc: Rpc, cursor: BlockRef | None, stop: asyncio.Event) -> Head | None:
    """The first head beyond the stored cursor: that block's work was written by the ingest before, and a block's
    work is written by one ingest only."""
    while not stop.is_set():
        head = await rpc.head()
        if cursor is None or head.number > cursor.number:
            return head
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await stop.wait()
    return None


if __name__ == "__main__":
    sys.exit(main("ingest", run))
