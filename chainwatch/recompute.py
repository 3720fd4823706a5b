"""Targeted recompute: turns heads and logs into re-reads of exactly the positions they can touch.

Logs mark targets (a protocol event marks the account it names; a price update marks the accounts exposed
to the assets the feed prices). Once the queue is drained and the head covers every marked log, all marks
are read in one block-pinned pass, riskiest first in `aggregate3`-sized chunks, each chunk's readings handed to
the alert tracker (and its alerts committed) as soon as it is answered. A block with nothing marked
costs no `eth_call`, except the risk-tiered re-reads that catch interest accrual (see refresh.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import structlog

from chainwatch import metrics
from chainwatch.alerts.directory import Directory
from chainwatch.alerts.tracker import Tracker
from chainwatch.canonical import Replaced, SeenChain
from chainwatch.catch_up import CatchUp
from chainwatch.chain import Head, Log, LogFilter
from chainwatch.feeds import PRICE_EVENTS, answer_of, as_price_source, price_source_of
from chainwatch.index import ExposureIndex, Target
from chainwatch.model import Reading
from chainwatch.engine_commands import CheckNow, EngineCommand, Mail, WatchesChanged
from chainwatch.progress import Progress
from chainwatch.protocols.base import (
    AccountReading,
    AccountsTouched,
    LendingProtocol,
    MarketsFound,
    MarketsTouched,
    ReadError,
    SourcesChanged,
    Unreadable,
)
from chainwatch.read_pass import Outcome, Planned, plan_chunks, read_planned, read_targets, readings_of
from chainwatch.reader import ReadFailed, Reader
from chainwatch.refresh import RefreshPolicy, RefreshSchedule
from chainwatch.rpc import Rpc, RpcError
from chainwatch.screening import Screen
from chainwatch.stage_timings import TIMINGS
from chainwatch.store import BlockRef, Store
from chainwatch.unreadable import UnreadableLedger

# Re-exported: the bot and the tests take the mailbox messages and the pass reader from here.
__all__ = ["CheckNow", "Engine", "EngineCommand", "Mail", "Outcome", "WatchesChanged", "read_targets"]

log = structlog.get_logger(__name__)

_RETRY_AFTER_FAILURE = 2.0
# Resolving after a source change that keeps failing (a node refusing the reads) is retried after 2, 4, 8... s, up
# to a minute: every try re-reads each failing protocol's whole configuration.
RESOLVE_RETRY_FIRST = 2.0
RESOLVE_RETRY_CAP = 60.0
_SEEN_LOGS_WINDOW = 1_000  # blocks of log identities kept to drop duplicates from backfill overlap
_START_BATCH = 2_000  # accounts per discovery call and targets per read at start: progress shows between them

class Engine:
    """Owns the watched set and the exposure index: only its own loop changes them, so nothing races a pass.

    Its mailbox carries chain events from the listener and commands (WatchesChanged, CheckNow) from the bot.
    """

    def __init__(
        self,
        protocols: Mapping[str, LendingProtocol],
        targets: Collection[Target],
        reader: Reader,
        tracker: Tracker,
        store: Store,
        *,
        refresh: RefreshPolicy,
        load_directory: Callable[[], Awaitable[Directory]] | None = None,
        max_reorg_depth: int = 64,
        unpriced_after: int = 3,
        resolve_retry: tuple[float, float] = (RESOLVE_RETRY_FIRST, RESOLVE_RETRY_CAP),
        track: Callable[[Collection[Target], int], Awaitable[None]] | None = None,
        catch_up_slice: int = _START_BATCH,
    ) -> None:
        self._protocols = dict(protocols)
        self._targets = frozenset(targets)
        self._load_directory = load_directory
        self._rpc: Rpc | None = None
        self._reader = reader
        self._tracker = tracker
        self._store = store
        # What a block's marked targets become: read and evaluated here, or (a cluster's ingest) work for workers,
        # whose results come back through `take_result`.
        self._track = track or self._read_and_track
        self._schedule = RefreshSchedule(refresh)
        self._refresh = refresh
        # Holders marked by direct feeds' answers alone: screened in memory before the pass (screening.py).
        self._screen = Screen(refresh.screen_margin)
        self._price_marked: set[Target] = set()
        self._drift_spacing = refresh.market_event_min_blocks
        self.index = ExposureIndex()
        self._pending: set[Target] = set()
        self._read_at: dict[Target, int] = {}
        # What could not be read at the last read of each target (a whole target: market ""), for /check and logs.
        self._seen_logs: dict[tuple[str, int], int] = {}
        self._newest_log_block = 0
        self._chain = SeenChain(max_reorg_depth)
        self._unreadable = UnreadableLedger(tracker, unpriced_after)
        # Block -> targets its account and market logs marked, re-read if the block is replaced.
        self._touched_at: dict[int, set[Target]] = {}
        self._drift_scanned: dict[tuple[str, str], int] = {}  # (protocol, key) -> block its holders were last marked
        self._head: Head | None = None
        # Protocols whose sources changed and are not yet resolved again; retried with backoff while that fails.
        self._to_resolve: set[str] = set()
        # Protocols with a market named by an account's event and not yet resolved: that market alone is resolved.
        # Protocol -> the targets whose events named it, read again once it is.
        self._to_resolve_found: dict[str, set[Target]] = {}
        self._resolve_retry = resolve_retry
        self._resolve_failures = 0
        self._resolve_due = 0.0  # monotonic time of the next try
        self.processed: BlockRef | None = None
        self.processed_at: float | None = None  # wall clock, for /status
        self._progress = asyncio.Condition()
        # Set by the app: resubscribe with the new feeds (the listener backfills what it missed meanwhile).
        self.on_sources_changed: Callable[[], Awaitable[None]] | None = None
        # A warm start's first read, done after subscribing (catch_up.py); set once every target has been read.
        self._catch_up: CatchUp | None = None
        self._catch_up_slice = catch_up_slice
        self.caught_up = asyncio.Event()

    # -- start-up -------------------------------------------------------------------------------------
    async def start(self, head: Head, rpc: Rpc, *, read_after_subscribing: bool = False) -> None:
        """Resolves every protocol on chain, finds the watched accounts' positions, reads every target at `head`.

        `read_after_subscribing` (a warm restart: the store knows each position's last health): the targets are not
        read here but by the run loop, riskiest first, a slice per pass after the listener has subscribed, so that
        blocks are heard from the start. The cursor is saved at `head` now: every target is read at `head` or
        later, so nothing before it needs a backfill."""
        self._rpc = rpc
        self._count_watched()
        self._tracker.forget_after(head.number)
        await self._resolve(head.number)
        for protocol in self._protocols.values():
            accounts = sorted({t.account for t in self._targets if t.protocol == protocol.name})
            await self._discover_accounts(protocol, accounts, head.number, progress=True)
            # Discovery may add markets, and with them feeds: publish those before anything listens.
            self._publish_feeds(protocol)
        self._head = head
        self._chain.record(head)
        # Riskiest (by the health stored before a restart) first: a position that crossed while chainwatch was
        # down is alerted before the rest are read.
        riskiest = self._tracker.riskiest_first(self._targets)
        if read_after_subscribing and riskiest:
            self._catch_up = CatchUp(riskiest, slice_size=self._catch_up_slice)
            log.info("recompute.catching_up", block=head.number, positions=len(riskiest))
        else:
            progress = Progress("first_read", len(self._targets))
            for batch in _slices(riskiest, _START_BATCH):
                await self._track(batch, head.number)
                progress.advance(len(batch))
            progress.finish()
            self.caught_up.set()
        await self._finish(head)

    async def wait_caught_up(self) -> None:
        """Returns once every watched target has had its first read since start (at once after a cold start)."""
        await self.caught_up.wait()

    def _take_catch_up(self) -> set[Target]:
        """The next slice of a warm start's first read, when one is due."""
        catch_up = self._catch_up
        if catch_up is None or not catch_up.ready():
            return set()
        return set(catch_up.take(lambda t: t in self._targets and t not in self._read_at and t not in self._pending))

    def _note_caught_up(self) -> None:
        """After a pass: the catch-up is over once every target it handed out is read (a failed read stays pending)."""
        catch_up = self._catch_up
        if catch_up is None:
            return
        catch_up.settle(self._pending)
        if not catch_up.done:
            return
        self._catch_up = None
        self.caught_up.set()
        log.info("recompute.caught_up", positions=catch_up.total, seconds=round(time.monotonic() - catch_up.started, 3))

    async def _discover_accounts(self, protocol: LendingProtocol, accounts: Sequence[str], block: int, *,
                                 progress: bool = False) -> None:  # fmt: skip
        """Discovery of `accounts`, resumed from the store: what an earlier scan found is restored, and only blocks
        after it (less the reorg window, whose events may have changed since) are scanned; then stored at `block`."""
        scope = protocol.discovery_scope
        after_of: dict[str, int | None] = dict.fromkeys(accounts)
        if scope is not None and accounts:
            scans, found = await self._store.discovered(protocol.name)
            wanted = set(accounts)
            protocol.restore([item for item in found if item.account in wanted])
            for account in accounts:
                stored = scans.get(account)
                if stored is not None and stored[0] == scope and stored[1] <= block:
                    after_of[account] = max(0, stored[1] - self._chain.max_depth)
        groups: dict[int | None, list[str]] = {}
        for account, after in after_of.items():
            groups.setdefault(after, []).append(account)
        counter = Progress(f"discovery:{protocol.name}", len(accounts)) if progress else None
        for after, group in sorted(groups.items(), key=lambda item: -1 if item[0] is None else item[0]):
            for batch in _slices(group, _START_BATCH):
                new = await protocol.discover(self._rpc, self._reader, batch, block, after=after)  # type: ignore[arg-type]
                if scope is not None:
                    await self._store.save_discovered(protocol.name, scope, batch, block, new)
                if counter is not None:
                    counter.advance(len(batch))
        if counter is not None:
            counter.finish()

    async def _resolve(self, block: int) -> None:
        for protocol in self._protocols.values():
            await protocol.resolve(self._reader, block)
            self._publish_feeds(protocol)

    def _publish_feeds(self, protocol: LendingProtocol) -> None:
        feeds = {as_price_source(source): keys for source, keys in protocol.price_feeds().items()}
        self.index.set_feeds(protocol.name, feeds)
        # A module (or a stand-in) that does not say which of its prices are direct has none: all its holders are read.
        direct = getattr(protocol, "direct_prices", dict)()
        self._screen.set_direct(protocol.name, direct, feeds)

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
    async def run(self, queue: asyncio.Queue[Mail]) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout()):
                    first = await queue.get()
                mail = [first, *_drain(queue)]
            except TimeoutError:
                mail = []  # a failed read is retried even when the chain is quiet
            commands: list[EngineCommand] = []
            for item in mail:
                if isinstance(item, (WatchesChanged, CheckNow)):
                    commands.append(item)
                elif isinstance(item, Head):
                    await self._take_head(item)
                else:
                    self._take(item)
            for command in commands:  # people asking go ahead of the scheduled re-reads
                await self._answer(command)
            await self._process()

    def _idle_timeout(self) -> float | None:
        """How long the loop may wait for mail: a failed read or resolve is retried even when the chain is quiet."""
        waits = [_RETRY_AFTER_FAILURE] if self._pending else []
        catch_up, head = self._catch_up, self._head
        if catch_up is not None and catch_up.has_slices and (head is None or self._newest_log_block <= head.number):
            waits.append(catch_up.seconds_until_ready())  # the next slice goes at once unless reads fail
        if self._to_resolve or self._to_resolve_found:
            # A floor, so that a retry that is due while the pass waits for a head does not spin the loop.
            waits.append(max(0.05, self._resolve_due - time.monotonic()))
        return min(waits, default=None)

    async def _answer(self, command: EngineCommand) -> None:
        """Carries out a bot command; its failure goes back to the asker, never stops the engine."""
        try:
            match command:
                case WatchesChanged(accounts=accounts):
                    result = await self._change_watches(accounts)
                case CheckNow(accounts=accounts, detailed=detailed):
                    result = await self._check(accounts, detailed)
        except (ReadFailed, ReadError, RpcError) as error:
            if not command.reply.done():
                command.reply.set_exception(error)
            return
        except Exception as error:  # a bug met by one command must not stop every alert
            log.exception("recompute.command_failed", command=type(command).__name__)
            if not command.reply.done():
                command.reply.set_exception(error)
            return
        if not command.reply.done():
            command.reply.set_result(result)

    async def _change_watches(self, accounts: Sequence[str]) -> list[Outcome]:
        assert self._load_directory is not None and self._head is not None
        directory = await self._load_directory()
        self._tracker.set_directory(directory)
        wanted = directory.targets()
        added, removed = wanted - self._targets, self._targets - wanted
        for target in removed:
            self.index.set_exposure(target, frozenset())
            self._read_at.pop(target, None)
            self._screen.forget(target)
            self._schedule.forget(target)
            self._unreadable.forget(target)
        self._pending -= removed
        self._price_marked -= removed
        self._targets = frozenset(wanted)
        self._count_watched()
        if added or removed:
            log.info("recompute.watches_changed", added=len(added), removed=len(removed), watched=len(wanted))
        # New targets are read now, so that their first alert does not wait for a price move.
        await self._discover({t.account for t in added} | set(accounts))
        asked = {Target(protocol=name, account=a) for a in accounts for name in self._protocols}
        if added - asked:
            await self._track(added - asked, self._head.number)
        outcomes = await self._read_outcomes(asked, self._head.number) if asked else []
        return [(target, outcome) for target, outcome in outcomes if target in asked]

    async def _check(self, accounts: Sequence[str], detailed: bool) -> list[Outcome]:
        assert self._head is not None
        await self._discover({a for a in accounts if not any(t.account == a for t in self._targets)})
        targets = {Target(protocol=name, account=a) for a in accounts for name in self._protocols}
        return await self._read_outcomes(targets, self._head.number, detailed=detailed)

    async def _discover(self, accounts: set[str]) -> None:
        """Finds where new accounts have positions; resubscribes when that brought new markets or feeds."""
        if not accounts or self._head is None:
            return
        before = self.log_filter()
        for protocol in self._protocols.values():
            await self._discover_accounts(protocol, sorted(accounts), self._head.number)
            self._publish_feeds(protocol)
        if self.log_filter() != before and self.on_sources_changed is not None:
            await self.on_sources_changed()

    async def _take_head(self, head: Head) -> None:
        metrics.CHAIN.block_seen(head.number)
        replaced = self._chain.check(head)
        if replaced is not None:
            await self._rewind(replaced)
            self._head = head  # the new branch's head, even when it is lower than the replaced tip
            metrics.CHAIN.rewound(head.number)
        elif self._head is None or head.number > self._head.number:
            self._head = head
        self._chain.record(head)

    def _take(self, event: Log) -> None:
        if event.removed:
            # The node says this log's block left the chain: whatever it touched is read again at the head.
            self._pending |= self._targets_touched_by(event)
            return
        if event.identity in self._seen_logs:
            return
        self._seen_logs[event.identity] = event.block_number
        self._newest_log_block = max(self._newest_log_block, event.block_number)
        with TIMINGS.timed("index"):
            touched = self._targets_touched_by(event)
        source, answer = price_source_of(event), answer_of(event)
        if touched and source is None:
            self._touched_at.setdefault(event.block_number, set()).update(touched)
        # A price event's holders are not kept per block for a rewind: each is read at or after the block (its
        # read mark undoes it), still pending, or screened out (its state is older; the answer is forgotten). Kept,
        # they were a set of every holder per block of the reorg window: at 100,000 positions with a price
        # update in every block, hundreds of MiB.
        # A log is news only for targets last read before its block (backfill overlaps what was read).
        news = {t for t in touched if self._read_at.get(t, -1) < event.block_number}
        if source is not None and answer is not None:
            # A direct feed's holders on that protocol are screened before the pass; anyone else's are read.
            self._screen.hear(source, event.block_number, event.log_index, answer)
            screenable = {t for t in news if self._screen.is_direct(t.protocol, source, self.index.exposure_of(t))}
            self._price_marked |= screenable
            news -= screenable
        self._pending |= news

    async def _rewind(self, replaced: Replaced) -> None:
        """Blocks from `replaced.height` up are gone: forget what they told us and read again, at the new head,
        every position they touched, were read at, or had their alert level set by."""
        ancestor = await self._common_ancestor(replaced)
        deep = ancestor is None
        if ancestor is None:
            ancestor = max(0, replaced.height - 1 - self._chain.max_depth)
        orphaned = self._chain.forget_above(ancestor)
        self._seen_logs = {k: b for k, b in self._seen_logs.items() if k[0] not in orphaned}
        self._newest_log_block = max(self._seen_logs.values(), default=0)
        self._drift_scanned = {key: b for key, b in self._drift_scanned.items() if b <= ancestor}
        self._screen.forget_answers_above(ancestor)
        affected: set[Target] = set()
        for block in [b for b in self._touched_at if b > ancestor]:
            affected |= self._touched_at.pop(block)
        for target, block in self._read_at.items():
            if block > ancestor:
                affected.add(target)
                self._read_at[target] = ancestor  # a log of the new branch above it is news again
        affected |= {Target(protocol=k.protocol, account=k.account) for k in self._tracker.orphan_levels_after(ancestor)}
        if deep:
            affected |= self._targets
            log.warning("recompute.reorg_deeper_than_window", from_block=replaced.height,
                        max_reorg_depth=self._chain.max_depth)  # fmt: skip
        self._pending |= affected & self._targets
        if self.processed is not None and self.processed.number > ancestor:
            self.processed = BlockRef(number=ancestor, hash=self._chain.hash_at(ancestor) or "")
            await self._store.save_cursor(self.processed)
        metrics.REORGS.inc()
        metrics.REORG_DEPTH.observe(max(1, replaced.head.number - ancestor))
        log.warning("recompute.blocks_replaced", from_block=replaced.height, ancestor=ancestor,
                    new_head=replaced.head.number, positions=len(affected & self._targets))  # fmt: skip

    async def _common_ancestor(self, replaced: Replaced) -> int | None:
        """The highest block both branches share, asking the node for its canonical hashes; None past the window."""
        lowest = self._chain.lowest()
        for number in range(replaced.height - 1, replaced.height - 2 - self._chain.max_depth, -1):
            if number < 0 or lowest is None or number < lowest:
                return max(number, 0)  # nothing was derived from below what we have seen
            ours = self._chain.hash_at(number)
            if ours is None:
                continue
            if number == replaced.head.number - 1:
                canonical = replaced.head.parent_hash
            else:
                assert self._rpc is not None
                canonical = (await self._rpc.head(number)).hash
            if canonical == ours:
                return number
        return None

    def _targets_touched_by(self, event: Log) -> set[Target]:
        source = price_source_of(event)
        if source is not None:
            return self.index.targets_priced_by(source)
        touched: set[Target] = set()
        for protocol in self._protocols.values():
            match protocol.touched_by(event):
                case AccountsTouched(accounts=accounts):
                    named = (Target(protocol=protocol.name, account=account) for account in accounts)
                    touched |= {target for target in named if target in self._targets}
                case MarketsTouched(keys=keys, drift=True):
                    # A key scanned less than the spacing ago had every holder marked (or read) then, so none can
                    # be due yet: a busy market's event on every block costs a lookup, not a scan of its holders.
                    horizon = event.block_number - self._drift_spacing
                    fresh = frozenset(k for k in keys if self._drift_scanned.get((protocol.name, k), -1) <= horizon)
                    if fresh:
                        for key in fresh:
                            self._drift_scanned[(protocol.name, key)] = event.block_number
                        holders = self.index.targets_holding(protocol.name, fresh)
                        touched |= {target for target in holders if self._read_at.get(target, -1) <= horizon}
                case MarketsTouched(keys=keys):
                    touched |= self.index.targets_holding(protocol.name, keys)
                case SourcesChanged():
                    self._to_resolve.add(protocol.name)
                case MarketsFound(accounts=accounts):
                    named = {Target(protocol=protocol.name, account=account) for account in accounts} & self._targets
                    self._to_resolve_found.setdefault(protocol.name, set()).update(named)
                    touched |= named
                case None:
                    pass
        return touched

    async def _process(self) -> None:
        head = self._head
        if head is None or self._newest_log_block > head.number:
            return  # logs of a block whose head has not come yet: wait for it, so the read includes them
        if (self._to_resolve or self._to_resolve_found) and time.monotonic() >= self._resolve_due:
            await self._on_sources_changed(head)
        self._pending |= self._schedule.due_at(head.number)  # type: ignore[arg-type]
        self._pending |= self._screened_in(head.number)
        self._pending |= self._take_catch_up()  # after the block's own marks: a slice never holds one of them back
        if self._pending:
            marked, self._pending = self._pending, set()
            try:
                await self._track(marked, head.number)
            except ReadFailed as error:
                self._pending |= marked
                if self._catch_up is not None:
                    self._catch_up.pause(_RETRY_AFTER_FAILURE)
                log.error("recompute.read_failed", block=head.number, targets=len(marked), error=str(error))
                return
        self._note_caught_up()
        await self._finish(head)

    def _screened_in(self, block: int) -> set[Target]:
        """The direct-price marks that screening cannot rule out at `block` (the rest are not read for them)."""
        candidates, self._price_marked = self._price_marked - self._pending, set()
        # A protocol still to resolve again (its resolve failed and backs off) may price from other feeds now (a
        # proxy confirmed a new aggregator): the old aggregator's answer is no longer its price, so read.
        unsure = {target for target in candidates if target.protocol in self._to_resolve}
        candidates -= unsure
        if not candidates:
            return unsure
        skipped = self._screen.skippable(candidates, block, self._tracker.screen_line, self._refresh.interval_for)
        if skipped:
            metrics.SCREENED.inc(len(skipped))
            log.info("recompute.screened", block=block, skipped=len(skipped), read=len(candidates) - len(skipped))
        return (candidates - skipped) | unsure

    async def _on_sources_changed(self, head: Head) -> None:
        """Resolves again the protocols whose sources changed, and re-reads their positions. One protocol's lasting
        trouble (a token whose `decimals()` reverts) keeps its previous feeds and is logged; it must never stop the
        others, nor the reads. A transport failure is tried again later, backing off, for that protocol alone. The
        listener resubscribes only when the log filter actually changed."""
        before = self.log_filter()
        failed: dict[str, str] = {}
        whole, found = self._to_resolve, self._to_resolve_found
        for name in sorted(whole | found.keys()):
            protocol = self._protocols[name]
            try:
                if name in whole:
                    await protocol.resolve(self._reader, head.number)
                else:  # a new market of some accounts: theirs is the only resolve and read it needs
                    await protocol.resolve_found(self._reader, head.number)
            except ReadFailed as error:
                failed[name] = str(error)
                continue
            except ReadError as error:
                log.error("recompute.resolve_refused", protocol=name, block=head.number, error=str(error))
                continue
            self._publish_feeds(protocol)
            if name in whole:
                self._pending |= {target for target in self._targets if target.protocol == name}
            else:  # read already in this pass if the resolve never failed; again after a failed one, harmlessly
                self._pending |= found[name] & self._targets
        self._to_resolve = whole & failed.keys()
        self._to_resolve_found = {name: targets for name, targets in found.items() if name in failed and name not in whole}
        if failed:
            self._resolve_failures += 1
            first, cap = self._resolve_retry
            delay = min(cap, first * 2 ** (self._resolve_failures - 1))
            self._resolve_due = time.monotonic() + delay
            for name, error in failed.items():
                log.error("recompute.resolve_failed", protocol=name, block=head.number, attempt=self._resolve_failures,
                          retry_in=delay, error=error)  # fmt: skip
        else:
            self._resolve_failures = 0
            log.info("recompute.sources_changed", block=head.number)
        if self.log_filter() != before and self.on_sources_changed is not None:
            await self.on_sources_changed()

    async def _finish(self, head: Head) -> None:
        if self.processed is not None and self.processed.number >= head.number:
            return
        self.processed = BlockRef(number=head.number, hash=head.hash)
        await self._store.save_cursor(self.processed)
        TIMINGS.take()  # a block without a pass logs no stages: what its logs' lookups cost is not carried on
        self.processed_at = time.time()
        metrics.CHAIN.block_processed(head.number)
        async with self._progress:
            self._progress.notify_all()
        horizon = head.number - _SEEN_LOGS_WINDOW
        if len(self._seen_logs) > 10_000:
            self._seen_logs = {k: b for k, b in self._seen_logs.items() if b >= horizon}
        if len(self._touched_at) > 2 * self._chain.max_depth:
            kept = head.number - self._chain.max_depth
            self._touched_at = {b: ts for b, ts in self._touched_at.items() if b > kept}

    # -- reading --------------------------------------------------------------------------------------
    async def read(self, targets: Iterable[Target], block: int) -> list[Reading]:
        """Reads `targets` at `block` in one batched pass; refreshes their exposure in the index."""
        return readings_of(await self._apply(await read_targets(self._protocols, self._reader, targets, block), block))

    async def _read_outcomes(self, targets: Iterable[Target], block: int, *, detailed: bool = False) -> list[Outcome]:
        """Reads `targets` (watched or not) at `block`; the watched ones are indexed and tracked as any read."""
        outcomes = await read_targets(self._protocols, self._reader, targets, block, detailed=detailed)
        watched = await self._apply([(t, o) for t, o in outcomes if t in self._targets], block)
        readings = await self._with_asset_lines(readings_of(watched), block)
        await self._tracker.observe(readings)  # a fresh reading of a watched position is as good as any
        log.info("recompute.read", block=block, positions=len(readings), asked=True)
        return outcomes

    async def _apply(self, outcomes: list[Outcome], block: int) -> list[Outcome]:
        """Books a pass's outcomes (index, read marks, schedule); leaves failed ones marked for the next pass."""
        unread = set()
        for target, outcome in outcomes:
            if isinstance(outcome, ReadFailed):
                unread.add(target)
                continue
            if isinstance(outcome, ReadError):
                self._screen.forget(target)
                await self._unreadable.record(target, (Unreadable(market="", reason=str(outcome)),), (), block)
                self._schedule.record_failure(target, block)
                continue
            await self._unreadable.record(target, outcome.unreadable, outcome.readings, block)
            self._screen.remember(target, outcome if not outcome.unreadable else None)
            worst = min((reading.health_factor for reading in outcome.readings), default=math.inf)
            self.take_result(target, block, outcome.exposure, worst, partly_unread=bool(outcome.unreadable),
                             read_again=outcome.read_again)  # fmt: skip
        if unread:
            # Still marked: the run loop comes back for them within seconds, even on a quiet chain.
            self._pending |= unread
            log.error("recompute.read_partly_failed", block=block, unread=len(unread))
        return outcomes

    def take_result(self, target: Target, block: int, exposure: frozenset[str], worst: float, *,
                    partly_unread: bool = False, read_again: bool = False) -> None:  # fmt: skip
        """Books one target's read at `block` (here, or by a worker): its exposure, read mark and refresh tier."""
        if target not in self._targets or self._read_at.get(target, -1) > block:
            return
        self.index.set_exposure(target, exposure)
        self._read_at[target] = block
        self._schedule.record(target, block, worst, partly_unread=partly_unread)
        if read_again:
            self._pending.add(target)

    async def _read_and_track(self, targets: Iterable[Target], block: int) -> None:
        """Reads `targets` at `block` riskiest first (lowest last-known health), one `aggregate3` chunk of targets
        at a time, and commits each chunk's alerts before the next chunk's answer is awaited: the position
        closest to liquidation is told first, not after the whole pass. Each chunk's request is started as soon as
        it is planned (the reader bounds how many are in flight), and planning yields between chunks, so the first
        chunk is judged and committed while later ones are still being encoded and read. The cursor
        is not moved here: a crash mid-block re-reads the whole block, and the levels committed say what was told.
        Raises ReadFailed only when no chunk could be read."""
        started: asyncio.Queue[tuple[list[Planned], asyncio.Future[list[Outcome]]] | None] = asyncio.Queue()
        reads: list[asyncio.Future[list[Outcome]]] = []

        async def plan_and_send() -> None:
            for chunk in plan_chunks(self._protocols, self._tracker.riskiest_first(targets), self._reader.limit.calls):
                reads.append(asyncio.ensure_future(read_planned(self._reader, chunk, block)))
                started.put_nowait((chunk, reads[-1]))
                await asyncio.sleep(0)  # a yield, not a wait: answered chunks are judged while the rest is encoded
            started.put_nowait(None)

        planning = asyncio.ensure_future(plan_and_send())
        chunks, positions, failures = 0, 0, []
        try:
            while (item := await started.get()) is not None:
                chunk, read = item
                chunks += 1
                try:
                    outcomes = await read
                except ReadFailed as error:
                    failures.append(error)
                    outcomes = [(target, error) for target, _ in chunk]
                readings = await self._with_asset_lines(readings_of(await self._apply(outcomes, block)), block)
                positions += len(readings)
                await self._tracker.observe(readings)
            await planning
        finally:
            planning.cancel()
            for read in reads:
                read.cancel()  # only those not yet done: a failure above must not leave reads running
        if chunks and len(failures) == chunks:
            raise failures[0]
        metrics.PASS_POSITIONS.observe(positions)
        stages = TIMINGS.take()
        metrics.observe_stages(stages)
        log.info("recompute.read", block=block, positions=positions, chunks=chunks, **stages)

    async def _with_asset_lines(self, readings: list[Reading], block: int) -> list[Reading]:
        """Alerts of positions whose liquidation price the plain read cannot tell (several collaterals) carry one
        per collateral asset: those few positions are read again in detail, at the same block, before alerting."""
        wanted = {Target(protocol=r.key.protocol, account=r.key.account) for r in readings
                  if r.has_debt and r.liquidation_price is None and not r.assets and self._tracker.would_alert(r)}  # fmt: skip
        if not wanted:
            return readings
        try:
            detailed = await read_targets(self._protocols, self._reader, wanted, block, detailed=True)
        except ReadFailed:
            return readings  # the alert matters more than its detail: send it without
        better = {r.key: r for _, o in detailed if isinstance(o, AccountReading) for r in o.readings}
        return [better.get(r.key, r) for r in readings]

    def _count_watched(self) -> None:
        for name in self._protocols:
            metrics.POSITIONS_WATCHED.labels(name).set(sum(1 for t in self._targets if t.protocol == name))

    @property
    def unreadable(self) -> dict[Target, tuple[Unreadable, ...]]:
        """Targets whose last read left parts unread, with what and why (shown, never dropped)."""
        return self._unreadable.parts

    def watched_count(self) -> int:
        return len(self._targets)

    def never_read(self) -> set[Target]:
        """Watched targets with no read booked yet: what they hold is unknown, so no price event marks them."""
        return {target for target in self._targets if target not in self._read_at}


def _slices(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _drain(queue: asyncio.Queue[Mail]) -> Sequence[Mail]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
