"""chainwatch's durable state in one SQLite file: the block cursor, each (chat, position)'s alert level, the
outbox, and (in `chat_settings`) what each chat set up through the bot.

A level change and the message it causes are written in one transaction, so a crash can neither lose an
alert nor make the restarted watcher repeat one it already queued.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import msgspec

from chainwatch.model import Discovered, Level, PositionKey, Record
from chainwatch.chat_settings import ChatSettings
from chainwatch.schema import LEGACY_CHAT, migrate, transaction as _transaction

class BlockRef(Record, frozen=True, kw_only=True):
    """A block by number and hash: the hash lets a restart notice that the chain moved under it."""

    number: int
    hash: str


class StoredLevel(Record, frozen=True, kw_only=True):
    level: Level
    health_factor: float
    block: int


class ChatPosition(Record, frozen=True, kw_only=True):
    """Whose alert state: one chat's view of one position (many chats may watch the same position)."""

    chat_id: int
    key: PositionKey


class Button(Record, frozen=True, kw_only=True):
    """An inline button under a message; `data` is the callback data (64 bytes at most, self-contained)."""

    text: str
    data: str


Keyboard = tuple[tuple[Button, ...], ...]


class OutboxMessage(Record, frozen=True, kw_only=True):
    """One queued message, as the sender sees it."""

    id: int
    priority: int
    chat_id: int | None
    text: str
    position: str
    kind: str
    block: int
    attempts: int
    buttons: Keyboard = ()


class PendingMessage(Record, frozen=True, kw_only=True):
    """A message to queue together with a level change."""

    priority: int
    chat_id: int | None
    text: str
    kind: str
    buttons: Keyboard = ()
    # A retraction: sent only if this chat was sent an alert of the position from a block after this one (the
    # replaced blocks); it cancels that position's unsent messages of any urgency, which told the replaced story.
    retracts_after: int | None = None


class LevelChange(Record, frozen=True, kw_only=True):
    """A (chat, position)'s new level, and the message it causes (if any), to be stored together.

    `chat_id` 0 is the operator's chat-less watch (alerts to the transport's default destination)."""

    chat_id: int = 0
    key: PositionKey
    level: StoredLevel
    message: PendingMessage | None = None


# Replies to commands go between the alerts that cannot wait and those that can: below CRITICAL, above WARN.
REPLY_PRIORITY = 15
# A new message's first attempt time: due at once whoever reads it. Stamping it with the writer's clock made it
# wait out any lag of the reader's clock behind the writer's (another machine's sender, a clock stepped back).
DUE_AT_ONCE = 0.0
_KEYBOARD = msgspec.json.Decoder(Keyboard)


class Store:
    """The SQLite file behind chainwatch: one connection shared by the engine and the sender.

    Every statement and transaction holds one lock: on a shared connection, a statement issued while another
    task's transaction is open would silently join it (and be rolled back with it).
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.chats = ChatSettings(db, self._lock)

    async def _rows(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._lock, self._db.execute(sql, parameters) as cursor:
            return list(await cursor.fetchall())

    async def _write(self, sql: str, parameters: tuple[Any, ...]) -> None:
        async with self._lock:
            await self._db.execute(sql, parameters)

    # -- cursor ---------------------------------------------------------------------------------------
    async def cursor(self) -> BlockRef | None:
        rows = await self._rows("SELECT block_number, block_hash FROM cursor WHERE id = 1")
        return BlockRef(number=rows[0][0], hash=rows[0][1]) if rows else None

    async def save_cursor(self, block: BlockRef) -> None:
        await self._write(
            "INSERT INTO cursor (id, block_number, block_hash) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET block_number = excluded.block_number, block_hash = excluded.block_hash",
            (block.number, block.hash),
        )

    # -- discovery ------------------------------------------------------------------------------------
    async def discovered(self, protocol: str) -> tuple[dict[str, tuple[str, int]], list[Discovered]]:
        """The protocol's stored discovery: account -> (scope, block its scan reached), and what was found."""
        scans = await self._rows("SELECT account, scope, block FROM discovery_scans WHERE protocol = ?", (protocol,))
        found = await self._rows("SELECT account, market, block FROM discovered WHERE protocol = ? "
                                 "ORDER BY account, market", (protocol,))  # fmt: skip
        return ({r[0]: (r[1], r[2]) for r in scans},
                [Discovered(account=r[0], market=r[1], block=r[2]) for r in found])  # fmt: skip

    async def save_discovered(self, protocol: str, scope: str, accounts: Sequence[str], block: int,
                              found: Sequence[Discovered]) -> None:  # fmt: skip
        """Stores, in one transaction, that `accounts` were scanned up to `block` for `scope`, and what was found
        (each at the earliest block it was ever found at)."""
        async with self._lock, _transaction(self._db):
            await self._db.executemany(
                "INSERT INTO discovered (protocol, account, market, block) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (protocol, account, market) DO UPDATE SET block = MIN(block, excluded.block)",
                [(protocol, f.account, f.market, f.block) for f in found],
            )
            await self._db.executemany(
                "INSERT INTO discovery_scans (protocol, account, scope, block) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (protocol, account) DO UPDATE SET scope = excluded.scope, block = excluded.block",
                [(protocol, account, scope, block) for account in accounts],
            )

    # -- positions ------------------------------------------------------------------------------------
    async def levels(self) -> dict[ChatPosition, StoredLevel]:
        rows = await self._rows(
            "SELECT chat_id, protocol, account, market, level, health_factor, block FROM levels WHERE chat_id != ?",
            (LEGACY_CHAT,),
        )
        return levels_from_rows(rows)

    async def adopt_legacy_levels(self, chats_of: Mapping[str, Sequence[int]]) -> int:
        """Hands levels stored before levels were per chat to the chats of the operator watches on their account
        (`chats_of`: account -> chat ids); levels of accounts no longer watched are dropped. Returns how many."""
        async with self._lock, _transaction(self._db):
            async with self._db.execute(
                "SELECT protocol, account, market, level, health_factor, block FROM levels WHERE chat_id = ?",
                (LEGACY_CHAT,),
            ) as cursor:
                legacy = list(await cursor.fetchall())
            for protocol, account, market, level, health_factor, block in legacy:
                for chat_id in chats_of.get(account, ()):
                    await self._db.execute(
                        "INSERT OR IGNORE INTO levels (chat_id, protocol, account, market, level, health_factor, block) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (chat_id, protocol, account, market, level, health_factor, block),
                    )
            await self._db.execute("DELETE FROM levels WHERE chat_id = ?", (LEGACY_CHAT,))
        return len(legacy)

    async def record(self, changes: Sequence[LevelChange]) -> None:
        """Saves positions' new levels and, in the same transaction, the messages they cause.

        A new message for a position supersedes that position's unsent messages of equal or lower urgency:
        they would tell an older story, and sent after it (urgent first) they would tell it out of order.
        Those of higher urgency stay and, being more urgent, still go first: per position, the order sent is
        the order they happened.
        """
        now = time.time()
        # Three statements for the whole pass (each aiosqlite call is a round trip to its thread): a burst of a
        # thousand alerts is one transaction of batched writes, not three thousand.
        plain = [c for c in changes if c.message is not None and c.message.retracts_after is None]
        async with self._lock, _transaction(self._db):
            await self._db.executemany(
                "INSERT INTO levels (chat_id, protocol, account, market, level, health_factor, block) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chat_id, protocol, account, market) DO UPDATE SET "
                "level = excluded.level, health_factor = excluded.health_factor, block = excluded.block",
                [(c.chat_id, c.key.protocol, c.key.account, c.key.market, int(c.level.level),
                  _finite(c.level.health_factor), c.level.block) for c in changes],
            )  # fmt: skip
            for change in changes:
                message = change.message
                if message is not None and message.retracts_after is not None:
                    key = change.key.as_text()
                    if await self._retract(key, message.chat_id, message.retracts_after, now):
                        await self._insert_message(message, key, change.level.block, now)
            # One message per (chat, position) in a pass, so superseding all before inserting any is the same as
            # doing each in turn.
            await self._db.executemany(
                "UPDATE outbox SET failed_at = ?, last_error = 'superseded by a newer alert' "
                "WHERE position = ? AND chat_id IS ? AND sent_at IS NULL AND failed_at IS NULL AND priority <= ?",
                [(now, c.key.as_text(), c.message.chat_id, c.message.priority) for c in plain],  # type: ignore[union-attr]
            )
            await self._db.executemany(
                "INSERT INTO outbox (priority, chat_id, text, position, kind, block, created_at, next_attempt_at, "
                "buttons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_message_row(c.message, c.key.as_text(), c.level.block, now) for c in plain],  # type: ignore[arg-type]
            )

    async def _retract(self, position: str, chat_id: int | None, after_block: int, now: float) -> bool:
        """Cancels the position's unsent alerts from replaced blocks; True when one of them had been sent."""
        await self._db.execute(
            "UPDATE outbox SET failed_at = ?, last_error = 'its block was replaced' WHERE position = ? AND chat_id IS ? "
            "AND sent_at IS NULL AND failed_at IS NULL AND block > ?",
            (now, position, chat_id, after_block),
        )
        async with self._db.execute(
            "SELECT 1 FROM outbox WHERE position = ? AND chat_id IS ? AND sent_at IS NOT NULL AND block > ? LIMIT 1",
            (position, chat_id, after_block),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def queue_notices(self, notices: Sequence[tuple[PositionKey, int, PendingMessage]]) -> None:
        """Queues messages about positions that change no alert level (cannot be priced, priced again); each
        supersedes its position's unsent messages of equal or lower urgency in that chat, as alerts do."""
        now = time.time()
        async with self._lock, _transaction(self._db):
            for key, block, message in notices:
                await self._db.execute(
                    "UPDATE outbox SET failed_at = ?, last_error = 'superseded by a newer alert' "
                    "WHERE position = ? AND chat_id IS ? AND sent_at IS NULL AND failed_at IS NULL AND priority <= ?",
                    (now, key.as_text(), message.chat_id, message.priority),
                )
                await self._insert_message(message, key.as_text(), block, now)

    async def queue_replies(self, chat_id: int, texts: Sequence[str], buttons: Keyboard = ()) -> None:
        """Queues a reply to a command (in parts, in order; the buttons go under the last part)."""
        now = time.time()
        async with self._lock, _transaction(self._db):
            for i, text in enumerate(texts):
                message = PendingMessage(priority=REPLY_PRIORITY, chat_id=chat_id, text=text, kind="REPLY",
                                         buttons=buttons if i == len(texts) - 1 else ())  # fmt: skip
                await self._insert_message(message, "", 0, now)

    async def _insert_message(self, message: PendingMessage, position: str, block: int, now: float) -> None:
        await self._db.execute(
            "INSERT INTO outbox (priority, chat_id, text, position, kind, block, created_at, next_attempt_at, buttons) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _message_row(message, position, block, now),
        )

    # -- outbox ---------------------------------------------------------------------------------------
    async def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        """The next due message of each chat (most urgent, then oldest), most urgent first across chats.

        One per chat, so a chat that must wait (Telegram allows about one message a second per chat) can
        never crowd the others out of the batch.
        """
        rows = await self._rows(
            "SELECT id, priority, chat_id, text, position, kind, block, attempts, buttons FROM ("
            "  SELECT *, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY priority DESC, id) AS turn FROM outbox"
            "  WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?"
            ") WHERE turn = 1 ORDER BY priority DESC, id LIMIT ?",
            (now, limit),
        )
        return [
            OutboxMessage(
                id=r[0], priority=r[1], chat_id=r[2], text=r[3], position=r[4], kind=r[5], block=r[6], attempts=r[7],
                buttons=_KEYBOARD.decode(r[8]) if r[8] else (),
            )
            for r in rows
        ]

    async def next_attempt_after(self, now: float) -> float | None:
        """When the earliest message deferred past `now` becomes due (None when there is none)."""
        rows = await self._rows(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
            "AND next_attempt_at > ?",
            (now,),
        )
        return rows[0][0] if rows else None

    async def pending_count(self, *, alerts_only: bool = False) -> int:
        rows = await self._rows(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
            + (" AND kind != 'REPLY'" if alerts_only else "")
        )
        return int(rows[0][0]) if rows else 0

    async def outbox_stats(self, now: float) -> dict[str, tuple[int, float]]:
        """Unsent messages by kind: (how many, age in seconds of the oldest)."""
        rows = await self._rows(
            "SELECT kind, COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL GROUP BY kind"
        )
        return {r[0]: (int(r[1]), max(0.0, now - r[2])) for r in rows}

    async def mark_sent(self, message_id: int, now: float) -> None:
        await self.mark_sent_many([(message_id, now)])

    async def mark_sent_many(self, sent: Sequence[tuple[int, float]]) -> None:
        """Marks messages sent, each (id, when), in one transaction: one disk sync for a burst of answers."""
        async with self._lock, _transaction(self._db):
            await self._db.executemany(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?",
                [(at, message_id) for message_id, at in sent],
            )

    async def defer(self, message_id: int, until: float, error: str) -> None:
        """Puts a message back for a later attempt (rate limit, network trouble)."""
        await self._write(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
            (until, error, message_id),
        )

    async def mark_failed(self, message_id: int, now: float, error: str) -> None:
        """Gives up on a message that can never be delivered (chat gone, bot blocked)."""
        await self._write(
            "UPDATE outbox SET failed_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
            (now, error, message_id),
        )


@asynccontextmanager
async def open_store(path: str | Path) -> AsyncIterator[Store]:
    """Opens (creating if needed) the SQLite file; WAL so a crash mid-write keeps the last commit."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
        await migrate(db)
        yield Store(db)


def levels_from_rows(rows: Iterable[Sequence[Any]]) -> dict[ChatPosition, StoredLevel]:
    """(chat_id, protocol, account, market, level, health_factor, block) rows as the tracker keeps them. The
    strings are interned: a row's own copies of the protocol's name and the account, held for every position
    alongside the directory's and the targets' copies, were ~20 MiB at 100,000 positions."""
    intern = sys.intern
    return {
        ChatPosition(chat_id=r[0], key=PositionKey(protocol=intern(r[1]), account=intern(r[2]), market=intern(r[3]))):
        StoredLevel(level=Level(r[4]), health_factor=r[5], block=r[6])
        for r in rows
    }


def _message_row(message: PendingMessage, position: str, block: int, now: float) -> tuple[Any, ...]:
    buttons = msgspec.json.encode(message.buttons).decode() if message.buttons else None
    return (message.priority, message.chat_id, message.text, position, message.kind, block, now, DUE_AT_ONCE, buttons)


def _finite(value: float) -> float:
    # SQLite stores inf as a REAL fine, but keeping a sentinel avoids surprises in tools that read the file.
    return value if value != float("inf") else 1e308
