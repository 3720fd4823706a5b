"""`chainwatch migrate`: moves one chain's state from its SQLite file into a PostgreSQL database.

Everything a restarted watcher needs comes along (cursor, levels, chats, watches, thresholds, mutes and the unsent
outbox); sent and given-up messages stay behind, being history. The copy is one PostgreSQL transaction, so it
lands whole or not at all, and it refuses a target that already holds that chain: copying twice would repeat
alerts, and merging two watchers' states has no right answer.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import asyncpg

from chainwatch.postgres_schema import migrate as migrate_postgres
from chainwatch.postgres_url import StorageUnavailable, redacted, scrubbed
from chainwatch.schema import LEGACY_CHAT
from chainwatch.store import open_store as open_sqlite_store


class CopyRefused(Exception):
    """The copy would lose or repeat something; the text says what, in one line."""


# (table, SQLite columns in source order, ORDER BY): the order matters where PostgreSQL numbers rows as they come
# (outbox ids decide send order among equals; watch seq keeps a chat's list in the order it was added).
_TABLES = (
    ("cursor", ("block_number", "block_hash"), "id"),
    ("chats", ("chat_id", "type", "created_at", "paused_at"), "chat_id"),
    ("chat_watches", ("chat_id", "address", "label", "created_at"), "created_at, rowid"),
    ("thresholds", ("chat_id", "address", "protocol", "market", "warn", "critical"), "rowid"),
    ("mutes", ("chat_id", "address", "until"), "rowid"),
    ("levels", ("chat_id", "protocol", "account", "market", "level", "health_factor", "block"), "rowid"),
    ("outbox", ("priority", "chat_id", "text", "position", "kind", "block", "created_at", "next_attempt_at",
                "attempts", "last_error", "buttons"), "id"),  # fmt: skip
)
_WHERE = {"outbox": "sent_at IS NULL AND failed_at IS NULL"}


async def copy_sqlite_to_postgres(source: Path, url: str, chain_id: int) -> dict[str, int]:
    """Copies `source`'s state into `url` under `chain_id`; returns how many rows of each table were copied."""
    if not source.is_file():
        raise CopyRefused(f"{source}: no such SQLite file")
    async with open_sqlite_store(source):
        pass  # brings an older file to the latest schema, the one the copy reads
    rows = await _read_sqlite(source)
    if any(r[0] == LEGACY_CHAT for r in rows["levels"]):
        raise CopyRefused(f"{source} holds levels from before per-chat levels: run chainwatch on it once, then migrate")
    try:
        db = await asyncpg.connect(url)
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise StorageUnavailable(f"cannot connect to {redacted(url)}: {scrubbed(str(error), url)}") from None
    try:
        await migrate_postgres(db)
        async with db.transaction():
            # Two copies of one chain at once would both find the target empty; the lock makes the second wait.
            await db.execute("SELECT pg_advisory_xact_lock($1)", chain_id)
            if held := [t for t, _, _ in _TABLES if await db.fetchval(f"SELECT 1 FROM {t} WHERE chain_id = $1 LIMIT 1",
                                                                        chain_id)]:  # fmt: skip
                raise CopyRefused(f"{redacted(url)} already holds chain {chain_id} ({', '.join(held)}): nothing copied")
            for table, columns, _ in _TABLES:
                await db.copy_records_to_table(
                    table, records=[(chain_id, *r) for r in rows[table]], columns=("chain_id", *columns)
                )
    finally:
        await db.close()
    return {table: len(rows[table]) for table, _, _ in _TABLES}


async def _read_sqlite(source: Path) -> dict[str, list[tuple[object, ...]]]:
    # Read-only and in one read transaction, so the copy is one consistent moment of the file.
    async with aiosqlite.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True) as db:
        await db.execute("BEGIN")
        read: dict[str, list[tuple[object, ...]]] = {}
        for table, columns, order in _TABLES:
            where = f" WHERE {_WHERE[table]}" if table in _WHERE else ""
            async with db.execute(f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY {order}") as cursor:
                read[table] = [tuple(r) for r in await cursor.fetchall()]
        await db.execute("COMMIT")
    return read
