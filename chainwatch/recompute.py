"""Targeted recompute: turns heads and logs into re-reads of exactly the positions they can touch.

Logs mark targets (a protocol event marks the account it names; a price update marks the accounts exposed
to the assets the feed prices). Once the queue is drained and the head covers every marked log, all marks
are read in one batched, block-pinned pass and handed to the alert tracker. A block with nothing marked
costs no `eth_call`, except the risk-tiered re-reads that catch interest accrual (see refresh.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence

import structlog

from chainwatch.alerts.tracker import Tracker
from chainwatch.chain import ChainEvent, Head, Log, LogFilter
from chainwatch.feeds import PRICE_EVENTS, is_price_update
from chainwatch.index import ExposureIndex, Target
from chainwatch.model import Reading
from chainwatch.multicall import Call
from chainwatch.protocols.base import AccountReading, AccountsTouched, LendingProtocol, MarketsTouched, ReadError, SourcesChanged
from chainwatch.reader import ReadFailed, Reader
from chainwatch.refresh import RefreshPolicy, RefreshSchedule
from chainwatch.rpc import Rpc
from chainwatch.store import BlockRef, Store

log = structlog.get_logger(__name__)

_RETRY_AFTER_FAILURE = 2.0
_SEEN_LOGS_WINDOW = 1_000  # blocks of log identities kept to drop duplicates from backfill overlap


class Engine:
    def __init__(
        self,
        protocols: Mapping[str, LendingProtocol],
        targets: Collection[Target],
        reader: Reader,
        tracker: Tracker,
        store: Store,
        *,
        refresh: RefreshPolicy,
    ) -> None:
        self._protocols = dict(protocols)
        self._targets = frozenset(targets)
        self._reader = reader
        self._tracker = tracker
        self._store = store
        self._schedule = RefreshSchedule(refresh)
        self._drift_spacing = refresh.market_event_min_blocks
        self.index = ExposureIndex()
        self._pending: set[Target] = set()
        self._read_at: dict[Target, int] = {}
        self._seen_logs: dict[tuple[str, int], int] = {}
        self._newest_log_block = 0
        self._head: Head | None = None
        self._sources_changed = False
        self.processed: BlockRef | None = None
        self._progress = asyncio.Condition()
        # Set by the app: resubscribe with the new feeds (the listener backfills what it missed meanwhile).
        self.on_sources_changed: Callable[[], Awaitable[None]] | None = None

    # -- start-up -------------------------------------------------------------------------------------
    async def start(self, head: Head, rpc: Rpc) -> None:
        """Resolves every protocol on chain, finds the watched accounts' positions, reads every target at `head`."""
        self._tracker.forget_after(head.number)
        await self._resolve(head.number)
        for protocol in self._protocols.values():
            accounts = sorted({t.account for t in self._targets if t.protocol == protocol.name})
            await protocol.discover(rpc, self._reader, accounts, head.number)
            # Discovery may add markets, and with them feeds: publish those before anything listens.
            self.index.set_feeds(protocol.name, protocol.price_feeds())
        self._head = head
        await self._read_and_track(self._targets, head.number)
        await self._finish(head)

    async def _resolve(self, block: int) -> None:
        for protocol in self._protocols.values():
            await protocol.resolve(self._reader, block)
            self.index.set_feeds(protocol.name, protocol.price_feeds())

    def log_filter(self) -> LogFilter:
        """Everything to subscribe to: each protocol's own events plus every feed that prices its assets."""
        filters = [protocol.log_filter() for protocol in self._protocols.values()]
        addresses = {address for f in filters for address in f.addresses} | self.index.feeds()
        topics = {topic for f in filters for topic in f.topic0s} | set(PRICE_EVENTS)
        return LogFilter(addresses=tuple(sorted(addresses)), topic0s=tuple(sorted(topics)))

    async def wait_processed(self, block: int) -> BlockRef:
        """Returns once every block up to `block` is fully processed (its alerts queued)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.processed is not None and self.processed.number >= block)
        assert self.processed is not None
        return self.processed

    def resume_from(self) -> BlockRef | None:
        return self.processed

    # -- steady state ---------------------------------------------------------------------------------
    async def run(self, queue: asyncio.Queue[ChainEvent]) -> None:
        while True:
            try:
                async with asyncio.timeout(_RETRY_AFTER_FAILURE if self._pending or self._sources_changed else None):
                    first = await queue.get()
                events = [first, *_drain(queue)]
            except TimeoutError:
                events = []  # a failed read is retried even when the chain is quiet
            for event in events:
                self._take(event)
            await self._process()

    def _take(self, event: ChainEvent) -> None:
        if isinstance(event, Head):
            if self._head is None or event.number > self._head.number:
                self._head = event
            return
        if event.removed or event.identity in self._seen_logs:
            return
        self._seen_logs[event.identity] = event.block_number
        self._newest_log_block = max(self._newest_log_block, event.block_number)
        # A log is news only for targets last read before its block (backfill overlaps what was read).
        self._pending |= {t for t in self._targets_touched_by(event) if self._read_at.get(t, -1) < event.block_number}

    def _targets_touched_by(self, event: Log) -> set[Target]:
        if is_price_update(event):
            return self.index.targets_priced_by(event.address)
        touched: set[Target] = set()
        for protocol in self._protocols.values():
            match protocol.touched_by(event):
                case AccountsTouched(accounts=accounts):
                    named = (Target(protocol=protocol.name, account=account) for account in accounts)
                    touched |= {target for target in named if target in self._targets}
                case MarketsTouched(keys=keys, drift=True):
                    horizon = event.block_number - self._drift_spacing
                    holders = self.index.targets_holding(protocol.name, keys)
                    touched |= {target for target in holders if self._read_at.get(target, -1) <= horizon}
                case MarketsTouched(keys=keys):
                    touched |= self.index.targets_holding(protocol.name, keys)
                case SourcesChanged():
                    self._sources_changed = True
                case None:
                    pass
        return touched

    async def _process(self) -> None:
        head = self._head
        if head is None or self._newest_log_block > head.number:
            return  # logs of a block whose head has not come yet: wait for it, so the read includes them
        if self._sources_changed:
            await self._on_sources_changed(head)
        self._pending |= self._schedule.due_at(head.number)  # type: ignore[arg-type]
        if self._pending:
            marked, self._pending = self._pending, set()
            try:
                await self._read_and_track(marked, head.number)
            except ReadFailed as error:
                self._pending |= marked
                log.error("recompute.read_failed", block=head.number, targets=len(marked), error=str(error))
                return
        await self._finish(head)

    async def _on_sources_changed(self, head: Head) -> None:
        """Resolves every protocol again. One protocol's lasting trouble (a token whose `decimals()` reverts)
        keeps its previous feeds and is logged; it must never stop the others, nor the reads. A transport
        failure is tried again at the next pass."""
        self._sources_changed = False
        for protocol in self._protocols.values():
            try:
                await protocol.resolve(self._reader, head.number)
            except ReadFailed as error:
                self._sources_changed = True
                log.error("recompute.resolve_failed", protocol=protocol.name, block=head.number, error=str(error))
                continue
            except ReadError as error:
                log.error("recompute.resolve_refused", protocol=protocol.name, block=head.number, error=str(error))
                continue
            self.index.set_feeds(protocol.name, protocol.price_feeds())
        self._pending |= self._targets
        log.info("recompute.sources_changed", block=head.number)
        if self.on_sources_changed is not None:
            await self.on_sources_changed()

    async def _finish(self, head: Head) -> None:
        if self.processed is not None and self.processed.number >= head.number:
            return
        self.processed = BlockRef(number=head.number, hash=head.hash)
        await self._store.save_cursor(self.processed)
        async with self._progress:
            self._progress.notify_all()
        horizon = head.number - _SEEN_LOGS_WINDOW
        if len(self._seen_logs) > 10_000:
            self._seen_logs = {k: b for k, b in self._seen_logs.items() if b >= horizon}

    # -- reading --------------------------------------------------------------------------------------
    async def read(self, targets: Iterable[Target], block: int) -> list[Reading]:
        """Reads `targets` at `block` in one batched pass; refreshes their exposure in the index."""
        readings: list[Reading] = []
        unread = set()
        for target, outcome in await read_targets(self._protocols, self._reader, targets, block):
            if isinstance(outcome, ReadFailed):
                unread.add(target)
                continue
            if isinstance(outcome, ReadError):
                log.error("recompute.position_unreadable", protocol=target.protocol, account=target.account,
                          block=block, error=str(outcome))  # fmt: skip
                self._schedule.record_failure(target, block)
                continue
            self.index.set_exposure(target, outcome.exposure)
            self._read_at[target] = block
            worst = min((reading.health_factor for reading in outcome.readings), default=math.inf)
            self._schedule.record(target, block, worst)
            readings.extend(outcome.readings)
            if outcome.read_again:
                self._pending.add(target)
        if unread:
            # Still marked: the run loop comes back for them within seconds, even on a quiet chain.
            self._pending |= unread
            log.error("recompute.read_partly_failed", block=block, unread=len(unread))
        return readings

    async def _read_and_track(self, targets: Iterable[Target], block: int) -> None:
        readings = await self.read(targets, block)
        await self._tracker.observe(readings)
        log.info("recompute.read", block=block, positions=len(readings))


async def read_targets(
    protocols: Mapping[str, LendingProtocol], reader: Reader, targets: Iterable[Target], block: int, *,
    detailed: bool = False,
) -> list[tuple[Target, AccountReading | ReadError | ReadFailed]]:
    """Each target's reading at `block`, all targets' calls in one batched pass (`detailed`: with per-asset lines).

    Identical calls (a market's state, an oracle's prices) are made once per pass and shared by every account
    that asked for them. A target whose calls fell in a chunk that could not be read gets ReadFailed (the rest
    are still read); ReadFailed is raised only when nothing could be read.
    """
    plans = [(target, protocols[target.protocol].plan(target.account, detailed=detailed)) for target in sorted(targets)]
    unique: dict[tuple[str, bytes], Call] = {}
    for _, plan in plans:
        for call in plan.calls:
            unique.setdefault(_call_key(call), call)
    slot = {key: index for index, key in enumerate(unique)}
    results = await reader.read_what_can_be_read(list(unique.values()), block)
    outcomes: list[tuple[Target, AccountReading | ReadError | ReadFailed]] = []
    for target, plan in plans:
        mine = [results[slot[_call_key(call)]] for call in plan.calls]
        if any(result is None for result in mine):
            outcomes.append((target, ReadFailed(block, len(plan.calls), "its batch could not be read")))
            continue
        try:
            outcomes.append((target, plan.decode(mine, block)))  # type: ignore[arg-type]
        except ReadError as error:
            outcomes.append((target, error))
    return outcomes


def _call_key(call: Call) -> tuple[str, bytes]:
    return (call.target.lower(), call.data)


def _drain(queue: asyncio.Queue[ChainEvent]) -> Sequence[ChainEvent]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
