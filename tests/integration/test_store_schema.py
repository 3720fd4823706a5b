"""The SQLite file across releases: migrations keep levels and the outbox. (What both engines share, chat settings
included, is tested on both in test_store_port.py.)"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from chainwatch.model import Level, PositionKey
from chainwatch.schema import _V1, LATEST
from chainwatch.store import ChatPosition, StoredLevel, open_store

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
