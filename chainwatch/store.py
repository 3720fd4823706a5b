"""chainwatch's durable state in one SQLite file: the block cursor, each position's alert level, the outbox.

A level change and the message it causes are written in one transaction, so a crash can neither lose an
alert nor make the restarted watcher repeat one it already queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from chainwatch.model import Level, PositionKey, Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    block_number INTEGER NOT NULL,
    block_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    market TEXT NOT NULL,
    level INTEGER NOT NULL,
    health_factor REAL NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (protocol, account, market)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    chat_id INTEGER,
    text TEXT NOT NULL,
    position TEXT NOT NULL,
    kind TEXT NOT NULL,
    block INTEGER NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL,
    failed_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (priority DESC, id) WHERE sent_at IS NULL AND failed_at IS NULL;
"""


class BlockRef(Record, frozen=True, kw_only=True):
    """A block by number and hash: the hash lets a restart notice that the chain moved under it."""

    number: int
    hash: str


class StoredLevel(Record, frozen=True, kw_only=True):
    level: Level
    health_factor: float
    block: int


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


class PendingMessage(Record, frozen=True, kw_only=True):
    """A message to queue together with a level change."""

    priority: int
    chat_id: int | None
    text: str
    kind: str


class LevelChange(Record, frozen=True, kw_only=True):
    """A position's new level, and the message it causes (if any), to be stored together."""

    key: PositionKey
    level: StoredLevel
    message: PendingMessage | None = None


class Store:
    """The SQLite file behind chainwatch: one connection shared by the engine and the sender.

    Every statement and transaction holds one lock: on a shared connection, a statement issued while another
    task's transaction is open would silently join it (and be rolled back with it).
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

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

    # -- positions ------------------------------------------------------------------------------------
    async def levels(self) -> dict[PositionKey, StoredLevel]:
        rows = await self._rows("SELECT protocol, account, market, level, health_factor, block FROM positions")
        return {
            PositionKey(protocol=r[0], account=r[1], market=r[2]): StoredLevel(
                level=Level(r[3]), health_factor=r[4], block=r[5]
            )
            for r in rows
        }

    async def record(self, changes: Sequence[LevelChange]) -> None:
        """Saves positions' new levels and, in the same transaction, the messages they cause.

        A new message for a position supersedes that position's unsent messages of equal or lower urgency:
        they would tell an older story, and sent after it (urgent first) they would tell it out of order.
        Those of higher urgency stay and, being more urgent, still go first: per position, the order sent is
        the order they happened.
        """
        now = time.time()
        async with self._lock, _transaction(self._db):
            for change in changes:
                key, level, message = change.key, change.level, change.message
                await self._db.execute(
                    "INSERT INTO positions (protocol, account, market, level, health_factor, block) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (protocol, account, market) DO UPDATE SET "
                    "level = excluded.level, health_factor = excluded.health_factor, block = excluded.block",
                    (key.protocol, key.account, key.market, int(level.level), _finite(level.health_factor), level.block),
                )
                if message is None:
                    continue
                await self._db.execute(
                    "UPDATE outbox SET failed_at = ?, last_error = 'superseded by a newer alert' "
                    "WHERE position = ? AND sent_at IS NULL AND failed_at IS NULL AND priority <= ?",
                    (now, key.as_text(), message.priority),
                )
                await self._db.execute(
                    "INSERT INTO outbox (priority, chat_id, text, position, kind, block, created_at, next_attempt_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.priority, message.chat_id, message.text, key.as_text(), message.kind, level.block, now, now),
                )

    # -- outbox ---------------------------------------------------------------------------------------
    async def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        """The next due message of each chat (most urgent, then oldest), most urgent first across chats.

        One per chat, so a chat that must wait (Telegram allows about one message a second per chat) can
        never crowd the others out of the batch.
        """
        rows = await self._rows(
            "SELECT id, priority, chat_id, text, position, kind, block, attempts FROM ("
            "  SELECT *, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY priority DESC, id) AS turn FROM outbox"
            "  WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?"
            ") WHERE turn = 1 ORDER BY priority DESC, id LIMIT ?",
            (now, limit),
        )
        return [
            OutboxMessage(
                id=r[0], priority=r[1], chat_id=r[2], text=r[3], position=r[4], kind=r[5], block=r[6], attempts=r[7]
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

    async def pending_count(self) -> int:
        rows = await self._rows("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")
        return int(rows[0][0]) if rows else 0

    async def mark_sent(self, message_id: int, now: float) -> None:
        await self._write("UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?", (now, message_id))

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
        await db.executescript(_SCHEMA)
        yield Store(db)


@asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    try:
        # Inside the try: a cancellation while BEGIN is in flight must still roll back, or the connection is
        # left in a transaction that swallows every later write.
        await db.execute("BEGIN IMMEDIATE")
        yield
    except BaseException:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


def _finite(value: float) -> float:
    # SQLite stores inf as a REAL fine, but keeping a sentinel avoids surprises in tools that read the file.
    return value if value != float("inf") else 1e308
