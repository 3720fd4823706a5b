"""The SQLite file across releases and the bot's tables: migrations keep levels and the outbox, changes commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from chainwatch.chat_settings import ANY, AddOutcome, Mute, ThresholdRule
from chainwatch.model import Level, PositionKey
from chainwatch.schema import _V1, LATEST, SchemaTooNew
from chainwatch.store import ChatPosition, LevelChange, StoredLevel, open_store

ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"
OTHER = "0x" + "11" * 20


def first_release_file(path: Path) -> None:
    """A file exactly as the first release left it: no schema version, one level, one pending and one sent alert."""
    db = sqlite3.connect(path)
    db.executescript(_V1)
    db.execute("INSERT INTO cursor (id, block_number, block_hash) VALUES (1, 77, '0xabc')")
    db.execute("INSERT INTO positions VALUES ('neverland', ?, '', 2, 1.15, 70)", (ACCOUNT,))
    db.execute("INSERT INTO positions VALUES ('neverland', ?, '', 1, 1.45, 71)", (OTHER,))
    now = time.time()
    for text, sent in (("pending CRITICAL", None), ("old WARN", now)):
        db.execute(
            "INSERT INTO outbox (priority, chat_id, text, position, kind, block, created_at, next_attempt_at, sent_at) "
            "VALUES (20, 4242, ?, ?, 'CRITICAL', 70, ?, ?, ?)",
            (text, f"neverland:{ACCOUNT}", now, now, sent),
        )
    db.commit()
    db.close()


class TestMigration:
    async def test_first_release_file_opens_with_levels_and_outbox_intact(self, tmp_path: Path) -> None:
        """Cursor, pending alert and levels survive; levels go to the operator watch's chat, unwatched ones go."""
        path = tmp_path / "old.db"
        first_release_file(path)
        async with open_store(path) as store:
            assert (await store.cursor()).number == 77  # type: ignore[union-attr]
            assert [m.text for m in await store.due_messages(time.time() + 1)] == ["pending CRITICAL"]
            assert await store.levels() == {}  # not handed out yet: the config decides to whom
            assert await store.adopt_legacy_levels({ACCOUNT: [4242]}) == 2
            levels = await store.levels()
        key = ChatPosition(chat_id=4242, key=PositionKey(protocol="neverland", account=ACCOUNT))
        assert levels == {key: StoredLevel(level=Level.CRITICAL, health_factor=1.15, block=70)}
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == LATEST

    async def test_reopening_the_latest_schema_changes_nothing(self, tmp_path: Path) -> None:
        """A second open of a migrated file keeps what it holds."""
        path = tmp_path / "new.db"
        level = StoredLevel(level=Level.WARN, health_factor=1.4, block=5)
        key = PositionKey(protocol="p", account=ACCOUNT)
        async with open_store(path) as store:
            await store.record([LevelChange(chat_id=9, key=key, level=level)])
        async with open_store(path) as store:
            assert await store.levels() == {ChatPosition(chat_id=9, key=key): level}

    async def test_a_file_from_a_newer_release_is_refused_untouched(self, tmp_path: Path) -> None:
        """A schema version this code does not know stops the start rather than risk what it holds."""
        path = tmp_path / "future.db"
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
        db.close()
        with pytest.raises(SchemaTooNew):
            async with open_store(path):
                pass
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == LATEST + 1


class TestChatSettings:
    async def test_watches_labels_rules_mutes_round_trip_and_stay_per_chat(self, tmp_path: Path) -> None:
        """What one chat sets is stored under it only; /remove takes the address's rules, mute and levels along."""
        async with open_store(tmp_path / "c.db") as store:
            chats = store.chats
            assert await chats.add_watch(1, "private", ACCOUNT, "vault", limit=2) is AddOutcome.ADDED
            assert await chats.add_watch(1, "private", ACCOUNT, "safe", limit=2) is AddOutcome.RELABELLED
            assert await chats.add_watch(1, "private", OTHER, "SAFE", limit=2) is AddOutcome.LABEL_TAKEN
            assert await chats.add_watch(1, "private", OTHER, None, limit=2) is AddOutcome.ADDED
            assert await chats.add_watch(1, "private", "0x" + "22" * 20, None, limit=2) is AddOutcome.LIMIT_REACHED
            assert await chats.add_watch(2, "private", ACCOUNT, "vault", limit=2) is AddOutcome.ADDED
            await chats.set_rule(ThresholdRule(chat_id=1, address=ACCOUNT, warn=2.0, critical=1.5))
            await chats.set_rule(ThresholdRule(chat_id=1, warn=1.8, critical=1.3))
            await chats.mute(Mute(chat_id=1, address=ACCOUNT, until=None))
            key = PositionKey(protocol="p", account=ACCOUNT)
            level = StoredLevel(level=Level.WARN, health_factor=1.4, block=5)
            await store.record([LevelChange(chat_id=1, key=key, level=level), LevelChange(chat_id=2, key=key, level=level)])
            assert await chats.remove_watch(1, ACCOUNT)
            setup = await chats.setup()
            assert [(w.chat_id, w.address, w.label) for w in setup.watches] == [(1, OTHER, None), (2, ACCOUNT, "vault")]
            assert [(r.chat_id, r.address) for r in setup.rules] == [(1, ANY)]
            assert setup.mutes == ()
            assert list(await store.levels()) == [ChatPosition(chat_id=2, key=key)]

    async def test_pause_resume_and_forget(self, tmp_path: Path) -> None:
        """A blocked chat is paused (not deleted) and resumed when it writes; /stop forgets all of it."""
        async with open_store(tmp_path / "c.db") as store:
            chats = store.chats
            await chats.touch_chat(7, "private")
            await chats.add_watch(7, "private", ACCOUNT, None, limit=5)
            assert await chats.pause_chat(7) and (await chats.setup()).paused == {7}
            assert await chats.touch_chat(7, "private") is True
            assert (await chats.setup()).paused == frozenset()
            await store.queue_replies(7, ["hello"])
            await chats.forget_chat(7)
            assert (await chats.setup()).watches == ()
            assert await store.pending_count() == 0
