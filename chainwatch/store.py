"""chainwatch's durable state in one SQLite file: the block cursor, each position's alert level, the outbox.

A level change and the message it causes are written in one transaction, so a crash can neither lose an
alert nor make the restarted watcher repeat one it already queued.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
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


class Store:
    """The SQLite file behind chainwatch; one connection, used from one event loop."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    # -- cursor ---------------------------------------------------------------------------------------
    async def cursor(self) -> BlockRef | None:
        async with self._db.execute("SELECT block_number, block_hash FROM cursor WHERE id = 1") as rows:
            row = await rows.fetchone()
        return None if row is None else BlockRef(number=row[0], hash=row[1])

    async def save_cursor(self, block: BlockRef) -> None:
        await self._db.execute(
            "INSERT INTO cursor (id, block_number, block_hash) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET block_number = excluded.block_number, block_hash = excluded.block_hash",
            (block.number, block.hash),
        )
        
    # -- positions ------------------------------------------------------------------------------------
    async def levels(self) -> dict[PositionKey, StoredLevel]:
        async with self._db.execute(
            "SELECT protocol, account, market, level, health_factor, block FROM positions"
        ) as rows:
            return {
                PositionKey(protocol=r[0], account=r[1], market=r[2]): StoredLevel(
                    level=Level(r[3]), health_factor=r[4], block=r[5]
                )
                async for r in rows
            }

    async def record(self, key: PositionKey, level: StoredLevel, message: PendingMessage | None) -> None:
        """Saves a position's new level and, in the same transaction, the message it causes."""
        now = time.time()
        async with _transaction(self._db):
            await self._db.execute(
                "INSERT INTO positions (protocol, account, market, level, health_factor, block) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (protocol, account, market) DO UPDATE SET "
                "level = excluded.level, health_factor = excluded.health_factor, block = excluded.block",
                (key.protocol, key.account, key.market, int(level.level), _finite(level.health_factor), level.block),
            )
            if message is not None:
                await self._db.execute(
                    "INSERT INTO outbox (priority, chat_id, text, position, kind, block, created_at, next_attempt_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (message.priority, message.chat_id, message.text, key.as_text(), message.kind, level.block, now, now),
                )

    # -- outbox ---------------------------------------------------------------------------------------
    async def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        """Unsent messages whose time has come, most urgent first, oldest first within an urgency."""
        async with self._db.execute(
            "SELECT id, priority, chat_id, text, position, kind, block, attempts FROM outbox "
            "WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ? "
            "ORDER BY priority DESC, id LIMIT ?",
            (now, limit),
        ) as rows:
            return [
                OutboxMessage(
                    id=r[0], priority=r[1], chat_id=r[2], text=r[3], position=r[4], kind=r[5], block=r[6], attempts=r[7]
                )
                async for r in rows
            ]

    async def next_attempt_after(self, now: float) -> float | None:
        """When the earliest message deferred past `now` becomes due (None when there is none)."""
        async with self._db.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
            "AND next_attempt_at > ?",
            (now,),
        ) as rows:
            row = await rows.fetchone()
        return None if row is None else row[0]

    async def pending_count(self) -> int:
        async with self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
        ) as rows:
            row = await rows.fetchone()
        return 0 if row is None else int(row[0])

    async def mark_sent(self, message_id: int, now: float) -> None:
        await self._db.execute(
            "UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?", (now, message_id)
        )
        
    async def defer(self, message_id: int, until: float, error: str) -> None:
        """Puts a message back for a later attempt (rate limit, network trouble)."""
        await self._db.execute(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
            (until, error, message_id),
        )
        
    async def mark_failed(self, message_id: int, now: float, error: str) -> None:
        """Gives up on a message that can never be delivered (chat gone, bot blocked)."""
        await self._db.execute(
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
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


def _finite(value: float) -> float:
    # SQLite stores inf as a REAL fine, but keeping a sentinel avoids surprises in tools that read the file.
    return value if value != float("inf") else 1e308

