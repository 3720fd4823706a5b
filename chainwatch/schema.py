"""The SQLite schema, versioned: each migration turns version N-1 into N, in one transaction with its number.

Version 1 is the schema of the first release (cursor, one level per position, outbox), which carried no version
number: a file at `user_version` 0 that already has its tables is a version 1 file. Nothing a migration moves is
lost: levels keep their figures, the outbox keeps every pending message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite

# A level stored before levels were per chat: it belongs to whichever operator watch covers its account, and is
# handed to that watch's chat at start-up (Store.adopt_legacy_levels).
LEGACY_CHAT = -1

_V1 = """
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

# Many chats, each with its own watches, thresholds, mutes and alert state per position.
_V2 = f"""
CREATE TABLE levels (
    chat_id INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    market TEXT NOT NULL,
    level INTEGER NOT NULL,
    health_factor REAL NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (chat_id, protocol, account, market)
);
INSERT INTO levels (chat_id, protocol, account, market, level, health_factor, block)
    SELECT {LEGACY_CHAT}, protocol, account, market, level, health_factor, block FROM positions;
DROP TABLE positions;
ALTER TABLE outbox ADD COLUMN buttons TEXT;
-- The supersede UPDATE looks pending messages up by position and chat.
CREATE INDEX outbox_by_position ON outbox (position, chat_id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE TABLE chats (
    chat_id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    paused_at REAL
);
CREATE TABLE chat_watches (
    chat_id INTEGER NOT NULL REFERENCES chats (chat_id),
    address TEXT NOT NULL,
    label TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (chat_id, address)
);
-- '' in address, protocol or market means "any": a rule for the whole chat, or for all of an address's protocols.
CREATE TABLE thresholds (
    chat_id INTEGER NOT NULL REFERENCES chats (chat_id),
    address TEXT NOT NULL,
    protocol TEXT NOT NULL,
    market TEXT NOT NULL,
    warn REAL NOT NULL,
    critical REAL NOT NULL,
    PRIMARY KEY (chat_id, address, protocol, market)
);
-- until NULL: muted until /unmute.
CREATE TABLE mutes (
    chat_id INTEGER NOT NULL REFERENCES chats (chat_id),
    address TEXT NOT NULL,
    until REAL,
    PRIMARY KEY (chat_id, address)
);
"""

# What discovery found in past events, and how far each account's scan went: a restart scans only newer blocks.
_V3 = """
CREATE TABLE discovery_scans (
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    scope TEXT NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (protocol, account)
);
CREATE TABLE discovered (
    protocol TEXT NOT NULL,
    account TEXT NOT NULL,
    market TEXT NOT NULL,
    block INTEGER NOT NULL,
    PRIMARY KEY (protocol, account, market)
);
"""

MIGRATIONS = (_V1, _V2, _V3)
LATEST = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The file was written by a newer chainwatch; opening it here could lose what that one stored."""


async def migrate(db: aiosqlite.Connection) -> int:
    """Brings the file to the latest schema; returns the version it was at."""
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    found = int(row[0]) if row else 0
    if found > LATEST:
        raise SchemaTooNew(f"the database has schema version {found}, this chainwatch knows up to {LATEST}")
    for version in range(found + 1, LATEST + 1):
        # executescript commits what is pending first; the BEGIN in the script makes the step all-or-nothing.
        try:
            await db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[version - 1]}\nPRAGMA user_version = {version};\nCOMMIT;")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
    return found


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
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
