"""The store's contract, run on both engines: a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import pytest

from chainwatch import postgres_schema, schema
from chainwatch.chat_settings import ANY, AddOutcome, Mute, ThresholdRule
from chainwatch.model import AlertKind, Discovered, Level, PositionKey
from chainwatch.postgres_url import StorageUnavailable
from chainwatch.schema import SchemaTooNew
from chainwatch.storage import open_store
from chainwatch.storage_port import StorePort
from chainwatch.store import BlockRef, Button, ChatPosition, LevelChange, PendingMessage, StoredLevel

ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"
OTHER = "0x" + "11" * 20
CHAIN = 143
_databases = itertools.count(1)

Opener = Callable[..., AbstractAsyncContextManager[StorePort]]


async def fresh_database(postgres_url: str) -> str:
    """A new, empty database on the session's server; its URL."""
    name = f"store_{next(_databases)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return postgres_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
async def where(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a store lives: a SQLite file, or a fresh PostgreSQL database (its URL)."""
    if request.param == "sqlite":
        return tmp_path / "store.db"
    return await fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def opener(where: str | Path) -> Opener:
    """Opens the store at `where` for CHAIN (or another chain), as often as a test likes."""
    return lambda chain_id=CHAIN: open_store(where, chain_id=chain_id)


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[StorePort]:
    async with opener() as s:
        yield s


def position(n: int) -> PositionKey:
    return PositionKey(protocol="aave_v3", account=f"0x{n:040x}")


def change(key: PositionKey, kind: AlertKind | None, *, chat_id: int | None = 7, block: int = 100,
           level: Level = Level.WARN, retracts_after: int | None = None, text: str | None = None) -> LevelChange:  # fmt: skip
    """A level change at `block`, with a message of `kind` for `chat_id` (none when kind is None)."""
    message = None if kind is None else PendingMessage(
        priority=kind.priority, chat_id=chat_id, text=text or f"{kind.value}@{block}", kind=kind.value,
        retracts_after=retracts_after,
    )  # fmt: skip
    return LevelChange(chat_id=chat_id or 0, key=key, level=StoredLevel(level=level, health_factor=1.2, block=block),
                       message=message)  # fmt: skip


async def due_texts(store: StorePort) -> list[str]:
    return [m.text for m in await store.due_messages(time.time() + 1)]


async def drain_texts(store: StorePort) -> list[str]:
    """Every pending message in the order the sender would send them (marking each sent)."""
    sent: list[str] = []
    while due := await store.due_messages(time.time() + 1, limit=1):
        await store.mark_sent(due[0].id, time.time())
        sent.append(due[0].text)
    return sent


class TestSchema:
    async def test_reopening_keeps_levels_and_cursor(self, opener: Opener) -> None:
        """A second open of a migrated store changes nothing it holds."""
        level = StoredLevel(level=Level.WARN, health_factor=1.4, block=5)
        key = PositionKey(protocol="p", account=ACCOUNT)
        async with opener() as store:
            await store.record([LevelChange(chat_id=9, key=key, level=level)])
            await store.save_cursor(BlockRef(number=5, hash="0x05"))
        async with opener() as store:
            assert await store.levels() == {ChatPosition(chat_id=9, key=key): level}
            assert await store.cursor() == BlockRef(number=5, hash="0x05")

    async def test_a_store_from_a_newer_release_is_refused_untouched(self, where: str | Path) -> None:
        """A schema version this code does not know stops the start rather than risk what it holds."""
        if isinstance(where, Path):
            db = sqlite3.connect(where)
            db.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
            db.close()
        else:
            db = await asyncpg.connect(where)
            await db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await db.execute("INSERT INTO schema_version VALUES ($1)", postgres_schema.LATEST + 1)
            await db.close()
        with pytest.raises(SchemaTooNew):
            async with open_store(where, chain_id=CHAIN):
                pass
        if isinstance(where, Path):
            assert sqlite3.connect(where).execute("PRAGMA user_version").fetchone()[0] == schema.LATEST + 1
        else:
            db = await asyncpg.connect(where)
            assert await db.fetchval("SELECT to_regclass('outbox')") is None  # nothing was created
            await db.close()


class TestLevelsAndMessages:
    async def test_a_failed_batch_leaves_no_level_and_no_message(self, store: StorePort) -> None:
        """A level change and its message commit together: one bad message in a batch stores none of it."""
        good = change(position(1), AlertKind.WARN)
        broken = change(position(2), AlertKind.CRITICAL)
        broken = LevelChange(chat_id=7, key=broken.key, level=broken.level,
                             message=PendingMessage(priority=20, chat_id=7, text=None, kind="CRITICAL"))  # type: ignore[arg-type]  # fmt: skip
        with pytest.raises(Exception):  # noqa: B017 - each engine names a NOT NULL violation its own way
            await store.record([good, broken])
        assert await store.levels() == {}
        assert await store.pending_count() == 0

    async def test_newer_alert_supersedes_stale_ones_of_its_position_and_chat(self, store: StorePort) -> None:
        """WARN, RECOVERED, WARN for one position while unsent: only the newest WARN is left; other chats keep theirs."""
        key = position(1)
        await store.record([change(key, AlertKind.WARN, block=1), change(key, AlertKind.WARN, chat_id=8, block=1)])
        await store.record([change(key, AlertKind.RECOVERED, block=2, level=Level.OK)])
        await store.record([change(key, AlertKind.WARN, block=3)])
        assert sorted(await drain_texts(store)) == ["WARN@1", "WARN@3"]
        assert await store.levels() == {
            ChatPosition(chat_id=7, key=key): StoredLevel(level=Level.WARN, health_factor=1.2, block=3),
            ChatPosition(chat_id=8, key=key): StoredLevel(level=Level.WARN, health_factor=1.2, block=1),
        }

    async def test_a_more_urgent_older_alert_stays_and_goes_first(self, store: StorePort) -> None:
        """LIQUIDATABLE then RECOVERED for one position: both stay, the liquidation first."""
        key = position(1)
        await store.record([change(key, AlertKind.LIQUIDATABLE, block=1, level=Level.LIQUIDATABLE)])
        await store.record([change(key, AlertKind.RECOVERED, block=2, level=Level.OK)])
        assert await drain_texts(store) == ["LIQUIDATABLE@1", "RECOVERED@2"]

    async def test_retraction_cancels_unsent_replaced_alerts_and_is_sent_only_after_a_sent_one(
        self, store: StorePort
    ) -> None:
        """Alerts from replaced blocks: unsent ones are cancelled; the retraction goes only if one was sent."""
        quiet, told = position(1), position(2)
        await store.record([change(quiet, AlertKind.CRITICAL, block=50),
                            change(told, AlertKind.CRITICAL, chat_id=8, block=50)])  # fmt: skip
        told_id = next(m.id for m in await store.due_messages(time.time() + 1) if m.position == told.as_text())
        await store.mark_sent(told_id, time.time())
        await store.record([
            change(quiet, AlertKind.RECOVERED, block=49, retracts_after=49, text="retract quiet"),
            change(told, AlertKind.RECOVERED, chat_id=8, block=49, retracts_after=49, text="retract told"),
        ])  # fmt: skip
        assert await drain_texts(store) == ["retract told"]

    async def test_notices_supersede_like_alerts(self, store: StorePort) -> None:
        """A notice replaces its position's unsent message of equal urgency, and leaves the level alone."""
        key = position(1)
        await store.record([change(key, AlertKind.WARN, block=1)])
        notice = PendingMessage(priority=AlertKind.WARN.priority, chat_id=7, text="cannot price", kind="UNPRICED")
        await store.queue_notices([(key, 2, notice)])
        assert await due_texts(store) == ["cannot price"]
        assert (await store.levels())[ChatPosition(chat_id=7, key=key)].block == 1


class TestOutbox:
    async def test_one_due_message_per_chat_most_urgent_then_oldest(self, store: StorePort) -> None:
        """Across chats, priority then age; within a chat only its most urgent waiting message is due."""
        kinds = [(1, AlertKind.RECOVERED), (2, AlertKind.WARN), (3, AlertKind.LIQUIDATABLE), (4, AlertKind.CRITICAL),
                 (5, AlertKind.WARN), (6, AlertKind.LIQUIDATABLE), (3, AlertKind.CRITICAL)]  # fmt: skip
        for n, (chat, kind) in enumerate(kinds):
            await store.record([change(position(n), kind, chat_id=chat, block=n, text=f"{kind.value} to {chat}")])
        assert await due_texts(store) == ["LIQUIDATABLE to 3", "LIQUIDATABLE to 6", "CRITICAL to 4", "WARN to 2",
                                          "WARN to 5", "RECOVERED to 1"]  # fmt: skip
        assert [m.text for m in await store.due_messages(time.time() + 1, limit=2)] == ["LIQUIDATABLE to 3",
                                                                                        "LIQUIDATABLE to 6"]  # fmt: skip

    async def test_a_new_message_is_due_to_a_reader_whose_clock_is_behind_the_writers(self, store: StorePort) -> None:
        """A sender on a machine whose clock lags the writer's by a minute still gets alerts, notices and replies
        at once: a new message is not stamped with the writer's clock."""
        await store.record([change(position(1), AlertKind.CRITICAL, chat_id=1, text="alert")])
        await store.queue_notices([(position(2), 100, PendingMessage(priority=AlertKind.UNPRICED.priority, chat_id=2,
                                                                     text="notice", kind="UNPRICED"))])  # fmt: skip
        await store.queue_replies(3, ["reply"])
        lagging = time.time() - 60
        assert [m.text for m in await store.due_messages(lagging)] == ["alert", "notice", "reply"]
        assert await store.next_attempt_after(lagging) is None

    async def test_a_batch_marked_sent_leaves_the_outbox_together(self, store: StorePort) -> None:
        """mark_sent_many takes three chats' messages out at once; the fourth stays due."""
        for chat in (1, 2, 3, 4):
            await store.record([change(position(chat), AlertKind.WARN, chat_id=chat, text=f"to {chat}")])
        due = await store.due_messages(time.time() + 1)
        await store.mark_sent_many([(m.id, time.time()) for m in due if m.chat_id != 4])
        assert await due_texts(store) == ["to 4"] and await store.pending_count() == 1

    async def test_replies_queue_in_parts_with_buttons_under_the_last(self, store: StorePort) -> None:
        """A reply in two parts goes in order, between CRITICAL and WARN, buttons only on the last part."""
        buttons = ((Button(text="Mute 1h", data="mute:1h"),),)
        await store.record([change(position(1), AlertKind.WARN, chat_id=1)])
        await store.queue_replies(2, ["part one", "part two"], buttons)
        due = await store.due_messages(time.time() + 1)
        assert [(m.text, m.buttons) for m in due] == [("part one", ()), ("WARN@100", ())]
        await store.mark_sent(due[0].id, time.time())
        assert (await store.due_messages(time.time() + 1))[0].buttons == buttons
        assert await store.pending_count() == 2 and await store.pending_count(alerts_only=True) == 1

    async def test_defer_fail_and_stats(self, store: StorePort) -> None:
        """A deferred message waits until its time; a failed one is gone; stats count what is left by kind."""
        now = time.time()
        await store.record([change(position(1), AlertKind.WARN, chat_id=1), change(position(2), AlertKind.CRITICAL,
                                                                                   chat_id=2)])  # fmt: skip
        warn, critical = sorted(await store.due_messages(now + 1), key=lambda m: m.priority)
        await store.defer(warn.id, now + 60, "429")
        await store.mark_failed(critical.id, now, "blocked")
        assert await store.due_messages(now + 1) == []
        assert await store.next_attempt_after(now + 1) == pytest.approx(now + 60)
        assert [(m.id, m.attempts) for m in await store.due_messages(now + 61)] == [(warn.id, 1)]
        stats = await store.outbox_stats(now + 10)
        assert list(stats) == ["WARN"] and stats["WARN"][0] == 1 and stats["WARN"][1] >= 9


class TestChatSettings:
    async def test_watches_labels_rules_mutes_round_trip_and_stay_per_chat(self, store: StorePort) -> None:
        """What one chat sets is stored under it only; /remove takes the address's rules, mute and levels along."""
        chats = store.chats
        assert await chats.add_watch(1, "private", ACCOUNT, "vault", limit=2) is AddOutcome.ADDED
        assert await chats.add_watch(1, "private", ACCOUNT, "safe", limit=2) is AddOutcome.RELABELLED
        assert await chats.add_watch(1, "private", OTHER, "SAFE", limit=2) is AddOutcome.LABEL_TAKEN
        assert await chats.add_watch(1, "private", OTHER, None, limit=2) is AddOutcome.ADDED
        assert await chats.add_watch(1, "private", "0x" + "22" * 20, None, limit=2) is AddOutcome.LIMIT_REACHED
        assert await chats.add_watch(2, "private", ACCOUNT, "vault", limit=2) is AddOutcome.ADDED
        assert [w.address for w in await chats.watches_of(1)] == [ACCOUNT, OTHER]
        await chats.set_rule(ThresholdRule(chat_id=1, address=ACCOUNT, warn=2.0, critical=1.5))
        await chats.set_rule(ThresholdRule(chat_id=1, warn=1.8, critical=1.3))
        await chats.mute(Mute(chat_id=1, address=ACCOUNT, until=None))
        key = PositionKey(protocol="p", account=ACCOUNT)
        level = StoredLevel(level=Level.WARN, health_factor=1.4, block=5)
        await store.record([LevelChange(chat_id=1, key=key, level=level), LevelChange(chat_id=2, key=key, level=level)])
        assert await chats.remove_watch(1, ACCOUNT)
        assert not await chats.remove_watch(1, ACCOUNT)
        setup = await chats.setup()
        assert [(w.chat_id, w.address, w.label) for w in setup.watches] == [(1, OTHER, None), (2, ACCOUNT, "vault")]
        assert [(r.chat_id, r.address) for r in setup.rules] == [(1, ANY)]
        assert setup.mutes == ()
        assert list(await store.levels()) == [ChatPosition(chat_id=2, key=key)]

    async def test_rules_and_mutes_replace_and_reset(self, store: StorePort) -> None:
        """Setting a rule twice keeps the last; reset and unmute say how much they removed."""
        chats = store.chats
        await chats.add_watch(1, "private", ACCOUNT, None, limit=5)
        await chats.set_rule(ThresholdRule(chat_id=1, warn=2.0, critical=1.5))
        await chats.set_rule(ThresholdRule(chat_id=1, warn=1.9, critical=1.4))
        assert [(r.warn, r.critical) for r in (await chats.setup()).rules] == [(1.9, 1.4)]
        assert await chats.reset_rule(1, ANY, ANY, ANY) and not await chats.reset_rule(1, ANY, ANY, ANY)
        await chats.mute(Mute(chat_id=1, address=ACCOUNT, until=10.0))
        await chats.mute(Mute(chat_id=1, address=ACCOUNT, until=20.0))
        await chats.mute(Mute(chat_id=1, address=OTHER, until=None))
        assert {m.address: m.until for m in (await chats.setup()).mutes} == {ACCOUNT: 20.0, OTHER: None}
        assert await chats.unmute(1, OTHER) == 1
        assert await chats.unmute(1, ANY) == 1

    async def test_pause_resume_and_forget(self, store: StorePort) -> None:
        """A blocked chat is paused (not deleted) and resumed when it writes; /stop forgets all of it."""
        chats = store.chats
        assert await chats.touch_chat(7, "private") is False
        assert not await chats.pause_chat(99)  # not a chat the bot knows
        await chats.add_watch(7, "private", ACCOUNT, None, limit=5)
        assert await chats.pause_chat(7) and (await chats.setup()).paused == {7}
        assert await chats.touch_chat(7, "private") is True
        assert (await chats.setup()).paused == frozenset()
        await store.queue_replies(7, ["hello"])
        await chats.forget_chat(7)
        assert (await chats.setup()).watches == ()
        assert await store.pending_count() == 0


class TestPostgresOnly:
    async def test_chains_sharing_a_database_see_only_their_own_state(self, postgres_url: str) -> None:
        """Two chains in one database: cursor, levels, outbox and chats of one are invisible to the other."""
        url = await fresh_database(postgres_url)
        async with open_store(url, chain_id=1) as monad, open_store(url, chain_id=2) as other:
            await monad.save_cursor(BlockRef(number=10, hash="0x0a"))
            await monad.record([change(position(1), AlertKind.CRITICAL)])
            await monad.chats.add_watch(7, "private", ACCOUNT, None, limit=5)
            assert await other.cursor() is None and await other.levels() == {}
            assert await other.due_messages(time.time() + 1) == [] and (await other.chats.setup()).watches == ()
            # A message id of one chain does nothing to the other chain's outbox.
            [message] = await monad.due_messages(time.time() + 1)
            await other.mark_sent(message.id, time.time())
            assert await monad.pending_count() == 1

    async def test_unreachable_database_error_names_no_password(self, tmp_path: Path) -> None:
        """The error for a database that cannot be reached shows the URL with its password as ***."""
        url = f"postgresql://watcher:s3cr%40t-pw@/chainwatch?host={tmp_path}/nowhere"
        with pytest.raises(StorageUnavailable) as caught:
            async with open_store(url, chain_id=CHAIN):
                pass
        text = f"{caught.value} {caught.value!r}"
        assert "s3cr" not in text and "***" in text


class TestDiscovery:
    async def test_a_scan_and_its_finds_survive_a_reopen(self, opener: Opener) -> None:
        """What discovery found and how far each account's scan went are there after a restart."""
        found = [Discovered(account=ACCOUNT, market="0x" + "ab" * 32, block=40),
                 Discovered(account=OTHER, market="0xvault#7", block=12)]  # fmt: skip
        async with opener() as store:
            await store.save_discovered("morpho", "scope-1", [ACCOUNT, OTHER], 90, found)
        async with opener() as store:
            scans, stored = await store.discovered("morpho")
            assert scans == {ACCOUNT: ("scope-1", 90), OTHER: ("scope-1", 90)}
            assert sorted(stored, key=lambda f: f.account) == sorted(found, key=lambda f: f.account)
            assert await store.discovered("euler") == ({}, [])

    async def test_a_later_scan_moves_the_block_and_keeps_the_first_find(self, store: StorePort) -> None:
        """A rescan reaching further moves the account's block (and scope); a market found again at a later
        block keeps the block it was first found at, and earlier finds stay."""
        first = Discovered(account=ACCOUNT, market="m1", block=40)
        await store.save_discovered("morpho", "scope-1", [ACCOUNT], 90, [first])
        await store.save_discovered("morpho", "scope-2", [ACCOUNT], 150, [
            Discovered(account=ACCOUNT, market="m1", block=95), Discovered(account=ACCOUNT, market="m2", block=120)])
        scans, found = await store.discovered("morpho")
        assert scans == {ACCOUNT: ("scope-2", 150)}
        assert found == [first, Discovered(account=ACCOUNT, market="m2", block=120)]

    async def test_each_chain_has_its_own_discovery(self, postgres_url: str) -> None:
        """On PostgreSQL one database serves several chains: one chain's scan is not another's (a SQLite file
        holds one chain, so this runs on PostgreSQL only)."""
        url = await fresh_database(postgres_url)
        async with open_store(url, chain_id=CHAIN) as store:
            await store.save_discovered("morpho", "s", [ACCOUNT], 90, [Discovered(account=ACCOUNT, market="m", block=1)])
        async with open_store(url, chain_id=CHAIN + 1) as other:
            assert await other.discovered("morpho") == ({}, [])
