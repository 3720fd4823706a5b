"""The engine with stand-in protocols (the chain edge replaced by an echoing node), a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from eth_abi import decode
import msgspec
import pytest
from structlog.testing import capture_logs

from chainwatch.alerts.state import Thresholds
from chainwatch.alerts.directory import Directory, Subscription
from chainwatch.alerts.tracker import Tracker
from chainwatch.chain import Head, Log, LogFilter
from chainwatch.feeds import ANSWER_UPDATED, PriceSource
from chainwatch.index import Target
from chainwatch.model import Level, PositionKey, Reading
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols.base import (
    AccountReading, AccountsTouched, PriceBasis, ReadError, ReadPlan, SourcesChanged, Touch,
)  # fmt: skip
from chainwatch.reader import ReadFailed, Reader
from chainwatch.rpc import RpcError
from chainwatch.recompute import Engine
from chainwatch.refresh import RefreshPolicy
from chainwatch.store import ChatPosition, Store, open_store
from tests.unit.test_reader import EchoNode, RefusingNode

EMITTER = "0x" + "ee" * 20
SOURCES_TOPIC = "0x" + "5c" * 32
ACCOUNT_TOPIC = "0x" + "ac" * 32


class StandIn:
    """A protocol whose health per block is scripted; its resolve can be told to fail for good."""

    def __init__(self, name: str, health_at: dict[int, float]) -> None:
        self.name = name
        self.health_at = health_at
        self.refuse_resolve = False

    async def resolve(self, reader: Reader, block: int) -> None:
        if self.refuse_resolve:
            raise ReadError(f"{self.name}: decimals() reverted")

    discovery_scope = None

    async def discover(self, rpc: object, reader: Reader, accounts: Sequence[str], block: int, *,
                       after: int | None = None) -> tuple[()]:  # fmt: skip
        return ()

    def restore(self, found: object) -> None:
        pass

    async def resolve_found(self, reader: Reader, block: int) -> None:
        pass

    def log_filter(self) -> LogFilter:
        return LogFilter(addresses=(EMITTER,), topic0s=(SOURCES_TOPIC, ACCOUNT_TOPIC))

    def price_feeds(self) -> dict[str, frozenset[str]]:
        return {}

    def touched_by(self, log: Log) -> Touch | None:
        if log.topic0 == SOURCES_TOPIC:
            return SourcesChanged()
        return AccountsTouched(accounts=frozenset({"0xA"}))

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        return ReadPlan(calls=(Call(target=EMITTER, data=self.name.encode()),),
                        decode=lambda results, block: self._decode(account, results, block))  # fmt: skip

    def _decode(self, account: str, results: Sequence[CallResult], block: int) -> AccountReading:
        reading = Reading(key=PositionKey(protocol=self.name, account=account), block=block,
                          health_factor=self.health_at[block], collateral=1.0, debt=1.0)  # fmt: skip
        return AccountReading(readings=(reading,), exposure=frozenset())


def log_at(block: int, topic: str, index: int = 0) -> Log:
    return Log(address=EMITTER, topics=(topic,), data=b"", block_number=block, block_hash=f"0x{block:064x}",
               log_index=index, transaction_hash="0x" + "00" * 32)  # fmt: skip


def head(block: int) -> Head:
    return Head(number=block, hash=f"0x{block:064x}", parent_hash=f"0x{block - 1:064x}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "engine.db") as opened:
        yield opened


class TestResolveFailures:
    async def test_one_protocol_refusing_to_resolve_stops_nobody(self, store: Store) -> None:
        """A lasting resolve error on one protocol (after a source change) leaves the other read and alerted."""
        good, bad = StandIn("good", {1: 2.0, 2: 1.1}), StandIn("bad", {1: 2.0, 2: 2.0})
        directory = Directory([Subscription(chat_id=0, address="0xA", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["good", "bad"])  # fmt: skip
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine(
            {"good": good, "bad": bad},  # type: ignore[dict-item]
            {Target(protocol="good", account="0xA"), Target(protocol="bad", account="0xA")},
            Reader(EchoNode(set()), EMITTER),  # type: ignore[arg-type]
            tracker,
            store,
            refresh=RefreshPolicy(every_blocks=10**6, bands=()),
        )
        await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        bad.refuse_resolve = True
        queue: asyncio.Queue[Head | Log] = asyncio.Queue()
        for event in (log_at(2, SOURCES_TOPIC), log_at(2, ACCOUNT_TOPIC, 1), head(2)):
            queue.put_nowait(event)
        running = asyncio.create_task(engine.run(queue))
        try:
            async with asyncio.timeout(5):
                await engine.wait_processed(2)
        finally:
            running.cancel()
        levels = await store.levels()
        good = ChatPosition(chat_id=0, key=PositionKey(protocol="good", account="0xA"))
        assert levels[good].level == Level.CRITICAL
        assert levels[good].block == 2


class TestReplacedBlocks:
    async def engine(self, store: Store, health_at: dict[int, float]) -> tuple[Engine, StandIn]:
        protocol = StandIn("p", health_at)
        directory = Directory([Subscription(chat_id=0, address="0xA", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["p"])  # fmt: skip
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine({"p": protocol}, {Target(protocol="p", account="0xA")},  # type: ignore[dict-item]
                        Reader(EchoNode(set()), EMITTER), tracker, store,  # type: ignore[arg-type]
                        refresh=RefreshPolicy(every_blocks=10**6, bands=()))  # fmt: skip
        await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        return engine, protocol

    async def test_a_removed_log_marks_its_positions_for_a_reread_at_the_head(self, store: Store) -> None:
        """A log delivered with removed: true (its block left the chain) re-reads what it touched at the next head."""
        engine, _ = await self.engine(store, {1: 2.0, 2: 2.0, 3: 1.1})
        queue: asyncio.Queue[Head | Log] = asyncio.Queue()
        removed = msgspec.structs.replace(log_at(2, ACCOUNT_TOPIC), removed=True)
        for event in (head(2), removed, head(3)):
            queue.put_nowait(event)
        running = asyncio.create_task(engine.run(queue))
        try:
            async with asyncio.timeout(5):
                await engine.wait_processed(3)
        finally:
            running.cancel()
        (stored,) = (await store.levels()).values()
        assert stored.block == 3 and stored.level == Level.CRITICAL


class PerAccount(StandIn):
    """A stand-in whose one call per account carries the account's name, so the node can refuse one account."""

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        def decode(results: Sequence[CallResult], block: int) -> AccountReading:
            if not results[0].success:
                raise ReadError(f"{account}: oracle price() reverted")
            return self._decode(account, results, block)

        return ReadPlan(calls=(Call(target=EMITTER, data=account.encode()),), decode=decode)


class TestAPoisonedRead:
    async def test_call_failing_every_time_costs_only_its_position(self, store: Store) -> None:
        """The node refuses every eth_call holding B's call: A is still read and alerted in the same pass, B is
        reported unreadable (logged, kept in `unreadable`) and is not retried on the next quiet block."""
        stand_in = PerAccount("p", {1: 1.1, 2: 1.1})
        directory = Directory([Subscription(chat_id=0, address="0xA", operator=True),
                               Subscription(chat_id=0, address="0xB", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["p"])  # fmt: skip
        node = RefusingNode(poisoned={b"0xB"})
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine({"p": stand_in}, {Target(protocol="p", account="0xA"), Target(protocol="p", account="0xB")},  # type: ignore[dict-item]
                        Reader(node, EMITTER), tracker, store,  # type: ignore[arg-type]
                        refresh=RefreshPolicy(every_blocks=10**6, bands=()))  # fmt: skip
        with capture_logs() as logs:
            await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        levels = await store.levels()
        assert levels[ChatPosition(chat_id=0, key=PositionKey(protocol="p", account="0xA"))].level == Level.CRITICAL
        assert ChatPosition(chat_id=0, key=PositionKey(protocol="p", account="0xB")) not in levels
        (event,) = [e for e in logs if e["event"] == "recompute.position_unreadable"]
        assert (event["account"], event["market"]) == ("0xB", "") and "reverted" in event["reason"]
        assert [u.reason for u in engine.unreadable[Target(protocol="p", account="0xB")]] == ["0xB: oracle price() reverted"]
        requests = len(node.sizes)
        queue: asyncio.Queue[Head | Log] = asyncio.Queue()
        queue.put_nowait(head(2))
        running = asyncio.create_task(engine.run(queue))
        try:
            async with asyncio.timeout(5):
                await engine.wait_processed(2)
        finally:
            running.cancel()
        assert len(node.sizes) == requests  # B waits out its backoff instead of being read on every pass


FLAKY_TOPIC = "0x" + "f1" * 32
NEW_EMITTER = "0x" + "ed" * 20


class FlakyResolve(StandIn):
    """A stand-in whose sources change on FLAKY_TOPIC (when `reports_changes`), whose resolve after that fails
    `failures` times as a transport failure would, and which, once resolved again, emits from `new_emitter`."""

    def __init__(self, name: str, *, failures: int, reports_changes: bool = True, new_emitter: str | None = None) -> None:
        super().__init__(name, {1: 2.0, 2: 2.0})
        self.failures = failures
        self.reports_changes = reports_changes
        self.new_emitter = new_emitter
        self.resolves = 0
        self._changed = False

    async def resolve(self, reader: Reader, block: int) -> None:
        self.resolves += 1
        if self.resolves > 1 and self.failures > 0:
            self.failures -= 1
            raise ReadFailed(block, 1, "eth_call failed: http_urls[0]: TimeoutError")
        self._changed = self.resolves > 1

    def log_filter(self) -> LogFilter:
        emitters = (EMITTER, self.new_emitter) if self._changed and self.new_emitter else (EMITTER,)
        return LogFilter(addresses=emitters, topic0s=(SOURCES_TOPIC, ACCOUNT_TOPIC))

    def touched_by(self, log: Log) -> Touch | None:
        if log.topic0 == FLAKY_TOPIC:
            return SourcesChanged() if self.reports_changes else None
        return super().touched_by(log)


class TestResolveBackoff:
    async def run_source_change(self, store: Store, flaky: FlakyResolve, done: Callable[[], bool]) -> tuple[FlakyResolve, int]:
        """Starts an engine with `flaky` and a steady protocol, sends a source change at block 2, runs until `done`;
        the steady protocol and how many times the listener was asked to resubscribe."""
        steady = FlakyResolve("steady", failures=0, reports_changes=False)
        directory = Directory([Subscription(chat_id=0, address="0xA", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["flaky", "steady"])  # fmt: skip
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine({"flaky": flaky, "steady": steady},  # type: ignore[dict-item]
                        {Target(protocol="flaky", account="0xA"), Target(protocol="steady", account="0xA")},
                        Reader(EchoNode(set()), EMITTER), tracker, store,  # type: ignore[arg-type]
                        refresh=RefreshPolicy(every_blocks=10**6, bands=()), resolve_retry=(0.01, 0.04))  # fmt: skip
        resubscribed = 0

        async def resubscribe() -> None:
            nonlocal resubscribed
            resubscribed += 1

        engine.on_sources_changed = resubscribe
        await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        queue: asyncio.Queue[Head | Log] = asyncio.Queue()
        for event in (log_at(2, FLAKY_TOPIC), head(2)):
            queue.put_nowait(event)
        running = asyncio.create_task(engine.run(queue))
        try:
            async with asyncio.timeout(5):
                await engine.wait_processed(2)  # a failing resolve holds no block back
                while not done():
                    await asyncio.sleep(0.01)
        finally:
            running.cancel()
        return steady, resubscribed

    async def test_failures_back_off_and_only_a_changed_filter_resubscribes(self, store: Store) -> None:
        """Four failed resolves are retried after 0.01, 0.02, 0.04, 0.04 s (capped), only the failing protocol is
        resolved again, and the listener resubscribes once: when the fifth try changes the filter."""
        flaky = FlakyResolve("flaky", failures=4, new_emitter=NEW_EMITTER)
        with capture_logs() as logs:
            steady, resubscribed = await self.run_source_change(store, flaky, lambda: flaky.resolves == 6)
        failures = [(e["attempt"], e["retry_in"]) for e in logs if e["event"] == "recompute.resolve_failed"]
        assert failures == [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.04)]
        assert steady.resolves == 1 and resubscribed == 1
        assert [e["event"] for e in logs].count("recompute.sources_changed") == 1

    async def test_a_source_change_that_leaves_the_filter_alone_does_not_resubscribe(self, store: Store) -> None:
        """Resolved again with the same emitters: the positions are re-read, the subscription is left as it is."""
        flaky = FlakyResolve("flaky", failures=0)
        with capture_logs() as logs:
            _, resubscribed = await self.run_source_change(
                store, flaky, lambda: any(e["event"] == "recompute.sources_changed" for e in logs)
            )
        assert flaky.resolves == 2 and resubscribed == 0
        assert any(e["event"] == "recompute.read" and e["block"] == 2 for e in logs)


class HeldNode(EchoNode):
    """Echoes aggregate3, except that a request holding `held` calldata waits, at `block`, until released."""

    def __init__(self, held: bytes, block: int) -> None:
        super().__init__(set())
        self.held, self.block = held, block
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        (calls,) = decode(["(address,bool,bytes)[]"], data[4:])
        if block == self.block and any(payload == self.held for _, _, payload in calls):
            self.holding.set()
            await self.release.wait()
        return await super().call(to, data, block)


class Scripted(PerAccount):
    """Health scripted per (account, block); its account event touches every scripted account."""

    def __init__(self, name: str, health: dict[tuple[str, int], float]) -> None:
        super().__init__(name, {})
        self.health = health

    def touched_by(self, log: Log) -> Touch | None:
        return AccountsTouched(accounts=frozenset(account for account, _ in self.health))

    def _decode(self, account: str, results: Sequence[CallResult], block: int) -> AccountReading:
        reading = Reading(key=PositionKey(protocol=self.name, account=account), block=block,
                          health_factor=self.health[(account, block)], collateral=1.0, debt=1.0)  # fmt: skip
        return AccountReading(readings=(reading,), exposure=frozenset())


class TestRiskiestChunkFirst:
    async def test_the_riskiest_chunks_alert_is_queued_while_a_later_chunk_is_still_being_read(self, store: Store) -> None:
        """One call per chunk: 0xZ (health 1.4 last read, so it is read first although it sorts last) goes critical
        at block 2 and its alert is in the outbox while the node still holds 0xA's read; the block is marked done
        only once 0xA is read and alerted too."""
        stand_in = Scripted("p", {("0xA", 1): 2.0, ("0xZ", 1): 1.4, ("0xA", 2): 1.1, ("0xZ", 2): 1.1})
        directory = Directory([Subscription(chat_id=1, address="0xA", label="safer", operator=True),
                               Subscription(chat_id=2, address="0xZ", label="riskier", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["p"])  # fmt: skip
        node = HeldNode(held=b"0xA", block=2)
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine({"p": stand_in}, {Target(protocol="p", account="0xA"), Target(protocol="p", account="0xZ")},  # type: ignore[dict-item]
                        Reader(node, EMITTER, max_calls=1), tracker, store,  # type: ignore[arg-type]
                        refresh=RefreshPolicy(every_blocks=10**6, bands=()))  # fmt: skip
        await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        warned = {m.chat_id: m.kind for m in await store.due_messages(10**12)}
        assert warned == {2: "WARN"}
        queue: asyncio.Queue[Head | Log] = asyncio.Queue()
        for event in (log_at(2, ACCOUNT_TOPIC), head(2)):
            queue.put_nowait(event)
        running = asyncio.create_task(engine.run(queue))
        try:
            async with asyncio.timeout(5):
                await node.holding.wait()
                while not any(m.kind == "CRITICAL" for m in await store.due_messages(10**12)):
                    await asyncio.sleep(0)  # yields to the engine; the deadline above bounds the wait
            queued = {m.chat_id: (m.kind, m.text) for m in await store.due_messages(10**12)}
            assert queued[2][0] == "CRITICAL" and "riskier" in queued[2][1]
            assert 1 not in queued  # 0xA's read is still held by the node
            assert engine.processed is not None and engine.processed.number == 1
            assert (await store.cursor()).number == 1  # type: ignore[union-attr]
            node.release.set()
            async with asyncio.timeout(5):
                await engine.wait_processed(2)
        finally:
            running.cancel()
        queued = {m.chat_id: m.kind for m in await store.due_messages(10**12)}
        assert queued == {1: "CRITICAL", 2: "CRITICAL"}


AGGREGATOR = "0x" + "a9" * 20


class FarBasis(PriceBasis, frozen=True, kw_only=True):
    """A holder far from any line at whatever price: screening would always skip it."""

    def health_at(self, prices: Mapping[str, int]) -> float | None:
        return 10.0


class ScreenedFlaky(FlakyResolve):
    """A FlakyResolve whose asset X is priced directly by AGGREGATOR's answers, its reads carrying a basis."""

    def price_feeds(self) -> dict[str, frozenset[str]]:
        return {AGGREGATOR: frozenset({"X"})}

    def direct_prices(self) -> dict[PriceSource, frozenset[str]]:
        return {PriceSource(emitter=AGGREGATOR): frozenset({"X"})}

    def _decode(self, account: str, results: Sequence[CallResult], block: int) -> AccountReading:
        reading = Reading(key=PositionKey(protocol=self.name, account=account), block=block, health_factor=10.0,
                          collateral=1.0, debt=1.0)  # fmt: skip
        return AccountReading(readings=(reading,), exposure=frozenset({"X"}), basis=FarBasis(block=block))


def answer_at(block: int, answer: int) -> Log:
    topics = (ANSWER_UPDATED, "0x" + answer.to_bytes(32, "big").hex(), "0x" + block.to_bytes(32, "big").hex())
    return Log(address=AGGREGATOR, topics=topics, data=b"", block_number=block, block_hash=f"0x{block:064x}",
               log_index=0, transaction_hash="0x" + "00" * 32)  # fmt: skip


class TestScreeningWhileAResolveIsDue:
    async def test_a_direct_answer_is_screened_until_the_sources_change_and_read_while_unresolved(
        self, store: Store
    ) -> None:
        """Block 2: the aggregator's answer screens the far holder out. Block 3: the protocol's sources change and
        its resolve fails (retried a minute later). Block 4: the same aggregator's answer may no longer be the
        price (a proxy may have confirmed another), so the holder is read."""
        flaky = ScreenedFlaky("flaky", failures=10**6)
        directory = Directory([Subscription(chat_id=0, address="0xA", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["flaky"])  # fmt: skip
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine({"flaky": flaky}, {Target(protocol="flaky", account="0xA")},  # type: ignore[dict-item]
                        Reader(EchoNode(set()), EMITTER), tracker, store,  # type: ignore[arg-type]
                        refresh=RefreshPolicy(every_blocks=10**6, bands=()), resolve_retry=(60.0, 60.0))  # fmt: skip
        await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        queue: asyncio.Queue[Head | Log] = asyncio.Queue()
        with capture_logs() as logs:
            running = asyncio.create_task(engine.run(queue))
            try:
                async with asyncio.timeout(5):
                    for block, first in ((2, answer_at(2, 1_900)), (3, log_at(3, FLAKY_TOPIC)), (4, answer_at(4, 1_800))):
                        queue.put_nowait(first)
                        queue.put_nowait(head(block))
                        await engine.wait_processed(block)  # one block at a time, as a live chain delivers them
            finally:
                running.cancel()
        assert [e["block"] for e in logs if e["event"] == "recompute.screened"] == [2]
        assert [e["block"] for e in logs if e["event"] == "recompute.resolve_failed"] == [3]
        assert [(e["block"], e["positions"]) for e in logs if e["event"] == "recompute.read"] == [(4, 1)]


class OrderNode(EchoNode):
    """Echoes aggregate3 and remembers each call's payload (here, an account) in the order the reads came."""

    def __init__(self) -> None:
        super().__init__(set())
        self.read: list[tuple[int, bytes]] = []

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        (calls,) = decode(["(address,bool,bytes)[]"], data[4:])
        self.read.extend((block, payload) for _, _, payload in calls)
        return await super().call(to, data, block)


class TestWarmRestart:
    async def test_a_restart_reads_after_it_could_listen_riskiest_first_and_says_when_it_has_read_all(
        self, store: Store
    ) -> None:
        """A first run stores 0xZ at 1.4 (WARN) and three others at 2.0. Restarted at block 2 (0xZ at 1.1 by then,
        crossed while down) with reads after subscribing: start reads nothing and saves the cursor at 2; the run
        loop then reads one position per pass, 0xZ first, and its CRITICAL is queued; `caught_up` is set once all
        four are read, at block 2."""
        accounts = ["0xA", "0xB", "0xC", "0xZ"]
        health = {(a, 1): 2.0 for a in accounts} | {(a, 2): 2.0 for a in accounts} | {("0xZ", 1): 1.4, ("0xZ", 2): 1.1}
        directory = Directory([Subscription(chat_id=n + 1, address=a, operator=True) for n, a in enumerate(accounts)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["p"])  # fmt: skip
        targets = {Target(protocol="p", account=a) for a in accounts}

        async def engine_on(node: EchoNode) -> Engine:
            tracker = await Tracker.load(store, directory, lambda: None)
            return Engine({"p": Scripted("p", health)}, targets, Reader(node, EMITTER, max_calls=1),  # type: ignore[dict-item,arg-type]
                          tracker, store, refresh=RefreshPolicy(every_blocks=10**6, bands=()), catch_up_slice=1)  # fmt: skip

        first = await engine_on(EchoNode(set()))
        await first.start(head(1), rpc=None)  # type: ignore[arg-type]
        assert {m.kind for m in await store.due_messages(10**12)} == {"WARN"}
        node = OrderNode()
        second = await engine_on(node)
        with capture_logs() as logs:
            await second.start(head(2), rpc=None, read_after_subscribing=True)  # type: ignore[arg-type]
            assert node.read == [] and second.never_read() == targets and not second.caught_up.is_set()
            assert (await store.cursor()).number == 2  # type: ignore[union-attr]
            running = asyncio.create_task(second.run(asyncio.Queue()))
            try:
                async with asyncio.timeout(5):
                    await second.wait_caught_up()
            finally:
                running.cancel()
        assert node.read[0] == (2, b"0xZ")
        # (0xZ's alert has it read once more, in detail, for its per-asset lines: same block)
        assert set(node.read) == {(2, a.encode()) for a in accounts}
        assert [e["event"] for e in logs if e["event"].startswith("recompute.") and e["event"] != "recompute.read"] == [
            "recompute.catching_up", "recompute.caught_up"]  # fmt: skip
        assert sum(e["event"] == "recompute.read" for e in logs) == 4  # one slice of one position per pass
        critical = [m for m in await store.due_messages(10**12) if m.kind == "CRITICAL"]
        assert [m.chat_id for m in critical] == [4]

    async def test_a_cold_start_reads_everything_before_it_returns(self, store: Store) -> None:
        """Without stored health nothing says which position is riskiest: `read_after_subscribing` is for
        restarts; without it the start reads every target and `caught_up` is set at once."""
        stand_in = Scripted("p", {("0xA", 1): 1.4})
        directory = Directory([Subscription(chat_id=1, address="0xA", operator=True)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["p"])  # fmt: skip
        tracker = await Tracker.load(store, directory, lambda: None)
        engine = Engine({"p": stand_in}, {Target(protocol="p", account="0xA")}, Reader(EchoNode(set()), EMITTER),  # type: ignore[dict-item,arg-type]
                        tracker, store, refresh=RefreshPolicy(every_blocks=10**6, bands=()))  # fmt: skip
        await engine.start(head(1), rpc=None)  # type: ignore[arg-type]
        assert engine.caught_up.is_set() and engine.never_read() == set()
        assert [m.kind for m in await store.due_messages(10**12)] == ["WARN"]


class ThrottlingNode(OrderNode):
    """Answers 429 to its first `refusals` requests, then echoes as OrderNode does."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.refused_at: list[float] = []

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        if self.refusals > 0:
            self.refusals -= 1
            self.refused_at.append(time.monotonic())
            raise RpcError("eth_call", "http_urls[0]: 429 Too Many Requests")
        return await super().call(to, data, block)


class TestWarmRestartUnderFailures:
    async def test_a_catch_up_read_refused_by_the_node_is_retried_and_its_crossing_still_alerted(
        self, store: Store
    ) -> None:
        """The node refuses the catch-up's first two reads (0xZ, crossed while down): the next try waits out the
        retry pause instead of coming at once with one more slice, 0xZ's CRITICAL is still queued, and the catch-up
        ends with every position read."""
        accounts = ["0xA", "0xZ"]
        health = {("0xA", 1): 2.0, ("0xA", 2): 2.0, ("0xZ", 1): 1.4, ("0xZ", 2): 1.1}
        directory = Directory([Subscription(chat_id=n + 1, address=a, operator=True) for n, a in enumerate(accounts)],
                              defaults=Thresholds(warn=1.5, critical=1.2), protocols=["p"])  # fmt: skip
        targets = {Target(protocol="p", account=a) for a in accounts}

        async def engine_on(node: EchoNode) -> Engine:
            tracker = await Tracker.load(store, directory, lambda: None)
            return Engine({"p": Scripted("p", health)}, targets, Reader(node, EMITTER, max_calls=1),  # type: ignore[dict-item,arg-type]
                          tracker, store, refresh=RefreshPolicy(every_blocks=10**6, bands=()), catch_up_slice=1)  # fmt: skip

        await (await engine_on(EchoNode(set()))).start(head(1), rpc=None)  # type: ignore[arg-type]
        node = ThrottlingNode(refusals=2)
        engine = await engine_on(node)
        with capture_logs() as logs:
            await engine.start(head(2), rpc=None, read_after_subscribing=True)  # type: ignore[arg-type]
            running = asyncio.create_task(engine.run(asyncio.Queue()))
            try:
                async with asyncio.timeout(10):
                    await engine.wait_caught_up()
            finally:
                running.cancel()
        assert [e["targets"] for e in logs if e["event"] == "recompute.read_failed"][0] == 1
        first, second = node.refused_at
        assert second - first >= 2.0  # the engine's retry pause after a failed read (_RETRY_AFTER_FAILURE)
        assert node.refusals == 0
        assert {account for _, account in node.read} == {b"0xA", b"0xZ"}
        assert [m.chat_id for m in await store.due_messages(10**12) if m.kind == "CRITICAL"] == [2]
