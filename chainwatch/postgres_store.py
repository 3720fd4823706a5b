"""chainwatch's durable state in PostgreSQL, for one chain of a database that may serve several.

The same semantics as the SQLite `store.Store` (see `storage_port.StorePort`): a level change and the message it
causes commit in one transaction; a new message supersedes its (position, chat)'s unsent ones of equal or lower
urgency; the outbox yields one due message per chat, most urgent first. Unlike SQLite, statements run on a pool of
connections, each transaction on its own connection, so no process-wide lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import asyncpg
import msgspec

from chainwatch.model import Discovered, PositionKey
from chainwatch.postgres_chat_settings import PostgresChatSettings
from chainwatch.postgres_schema import migrate
from chainwatch.postgres_url import StorageUnavailable, redacted, scrubbed
from chainwatch.roles import OUTBOX_CHANNEL
from chainwatch.store import (
    DUE_AT_ONCE,
    REPLY_PRIORITY,
    BlockRef,
    ChatPosition,
    Keyboard,
    LevelChange,
    OutboxMessage,
    PendingMessage,
    StoredLevel,
    levels_from_rows,
)

_KEYBOARD = msgspec.json.Decoder(Keyboard)
_PENDING = "sent_at IS NULL AND failed_at IS NULL"


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool, chain_id: int) -> None:
        self._pool = pool
        self._chain = chain_id
        self.chats = PostgresChatSettings(pool, chain_id)

    @property
    def pool(self) -> asyncpg.Pool:
        """The connections (a cluster's roles run their own transactions on them)."""
        return self._pool

    @property
    def chain_id(self) -> int:
        return self._chain

    async def check(self, condition: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """Runs `condition` (e.g. `Leadership.fenced`) in a transaction on one of the store's own connections: it
        proves the fact from where the writes go, not from the connection that holds a lock."""
        async with self._pool.acquire() as db, db.transaction():
            await condition(db)

    # -- cursor ---------------------------------------------------------------------------------------
    async def cursor(self) -> BlockRef | None:
        row = await self._pool.fetchrow("SELECT block_number, block_hash FROM cursor WHERE chain_id = $1", self._chain)
        return BlockRef(number=row[0], hash=row[1]) if row else None

    async def save_cursor(self, block: BlockRef) -> None:
        await self.save_cursor_in(self._pool, block)

    async def save_cursor_in(self, db: asyncpg.Connection | asyncpg.Pool, block: BlockRef) -> None:
        """Saves the cursor on `db` (a cluster's ingest: in the transaction that writes the block's work)."""
        await db.execute(
            "INSERT INTO cursor (chain_id, block_number, block_hash) VALUES ($1, $2, $3) ON CONFLICT (chain_id) "
            "DO UPDATE SET block_number = excluded.block_number, block_hash = excluded.block_hash",
            self._chain, block.number, block.hash,
        )  # fmt: skip

    # -- discovery ------------------------------------------------------------------------------------
    async def discovered(self, protocol: str) -> tuple[dict[str, tuple[str, int]], list[Discovered]]:
        """The protocol's stored discovery on this chain (see `Store.discovered`)."""
        scans = await self._pool.fetch(
            "SELECT account, scope, block FROM discovery_scans WHERE chain_id = $1 AND protocol = $2",
            self._chain, protocol,
        )  # fmt: skip
        found = await self._pool.fetch(
            "SELECT account, market, block FROM discovered WHERE chain_id = $1 AND protocol = $2 "
            "ORDER BY account, market",
            self._chain, protocol,
        )  # fmt: skip
        return ({r[0]: (r[1], r[2]) for r in scans},
                [Discovered(account=r[0], market=r[1], block=r[2]) for r in found])  # fmt: skip

    async def save_discovered(self, protocol: str, scope: str, accounts: Sequence[str], block: int,
                              found: Sequence[Discovered]) -> None:  # fmt: skip
        """Stores the scan and its finds in one transaction (see `Store.save_discovered`)."""
        async with self._pool.acquire() as db, db.transaction():
            await db.executemany(
                "INSERT INTO discovered (chain_id, protocol, account, market, block) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (chain_id, protocol, account, market) DO UPDATE SET "
                "block = LEAST(discovered.block, excluded.block)",
                [(self._chain, protocol, f.account, f.market, f.block) for f in found],
            )
            await db.executemany(
                "INSERT INTO discovery_scans (chain_id, protocol, account, scope, block) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (chain_id, protocol, account) DO UPDATE SET scope = excluded.scope, block = excluded.block",
                [(self._chain, protocol, account, scope, block) for account in accounts],
            )

    # -- positions ------------------------------------------------------------------------------------
    async def levels(self) -> dict[ChatPosition, StoredLevel]:
        rows = await self._pool.fetch(
            "SELECT chat_id, protocol, account, market, level, health_factor, block FROM levels WHERE chain_id = $1",
            self._chain,
        )
        return levels_from_rows(rows)

    async def adopt_legacy_levels(self, chats_of: Mapping[str, Sequence[int]]) -> int:
        """Nothing to adopt: PostgreSQL storage began after levels became per chat."""
        return 0

    async def record(self, changes: Sequence[LevelChange]) -> None:
        """Saves positions' new levels and, in the same transaction, the messages they cause (see `Store.record`)."""
        async with self._pool.acquire() as db, db.transaction():
            await self.record_in(db, changes)

    async def record_in(self, db: asyncpg.Connection, changes: Sequence[LevelChange]) -> None:
        """`record` inside the caller's transaction (a cluster's worker: with its chunk's completion); wakes the
        senders (NOTIFY, delivered on commit) when a message was queued."""
        now = time.time()
        queued = False
        for change in changes:
            key, level, message = change.key, change.level, change.message
            await db.execute(
                "INSERT INTO levels (chain_id, chat_id, protocol, account, market, level, health_factor, block) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (chain_id, chat_id, protocol, account, market) DO UPDATE SET "
                "level = excluded.level, health_factor = excluded.health_factor, block = excluded.block",
                self._chain, change.chat_id, key.protocol, key.account, key.market, int(level.level),
                _finite(level.health_factor), level.block,
            )  # fmt: skip
            if message is None:
                continue
            if message.retracts_after is not None:
                if await self._retract(db, key.as_text(), message.chat_id, message.retracts_after, now):
                    await self._insert_message(db, message, key.as_text(), level.block, now)
                    queued = True
                continue
            await self._supersede(db, key.as_text(), message, now)
            await self._insert_message(db, message, key.as_text(), level.block, now)
            queued = True
        if queued:
            await self._wake_senders(db)

    async def _supersede(self, db: asyncpg.Connection, position: str, message: PendingMessage, now: float) -> None:
        await db.execute(
            "UPDATE outbox SET failed_at = $1, last_error = 'superseded by a newer alert' WHERE chain_id = $2 "
            f"AND position = $3 AND chat_id IS NOT DISTINCT FROM $4 AND {_PENDING} AND priority <= $5",
            now, self._chain, position, message.chat_id, message.priority,
        )  # fmt: skip

    async def _retract(self, db: asyncpg.Connection, position: str, chat_id: int | None, after_block: int,
                       now: float) -> bool:  # fmt: skip
        """Cancels the position's unsent alerts from replaced blocks; True when one of them had been sent."""
        await db.execute(
            "UPDATE outbox SET failed_at = $1, last_error = 'its block was replaced' WHERE chain_id = $2 "
            f"AND position = $3 AND chat_id IS NOT DISTINCT FROM $4 AND {_PENDING} AND block > $5",
            now, self._chain, position, chat_id, after_block,
        )  # fmt: skip
        sent = await db.fetchval(
            "SELECT 1 FROM outbox WHERE chain_id = $1 AND position = $2 AND chat_id IS NOT DISTINCT FROM $3 "
            "AND sent_at IS NOT NULL AND block > $4 LIMIT 1",
            self._chain, position, chat_id, after_block,
        )  # fmt: skip
        return sent is not None

    async def queue_notices(self, notices: Sequence[tuple[PositionKey, int, PendingMessage]]) -> None:
        """Queues messages about positions that change no alert level; each supersedes as alerts do."""
        now = time.time()
        async with self._pool.acquire() as db, db.transaction():
            for key, block, message in notices:
                await self._supersede(db, key.as_text(), message, now)
                await self._insert_message(db, message, key.as_text(), block, now)
            if notices:
                await self._wake_senders(db)

    async def queue_replies(self, chat_id: int, texts: Sequence[str], buttons: Keyboard = ()) -> None:
        """Queues a reply to a command (in parts, in order; the buttons go under the last part)."""
        now = time.time()
        async with self._pool.acquire() as db, db.transaction():
            for i, text in enumerate(texts):
                message = PendingMessage(priority=REPLY_PRIORITY, chat_id=chat_id, text=text, kind="REPLY",
                                         buttons=buttons if i == len(texts) - 1 else ())  # fmt: skip
                await self._insert_message(db, message, "", 0, now)
            if texts:
                await self._wake_senders(db)

    async def _wake_senders(self, db: asyncpg.Connection) -> None:
        # Inside the writing transaction: PostgreSQL delivers a NOTIFY only on commit, so a sender woken by it
        # always finds the rows, and a rolled-back write wakes nobody.
        await db.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, str(self._chain))

    async def _insert_message(self, db: asyncpg.Connection, message: PendingMessage, position: str, block: int,
                              now: float) -> None:  # fmt: skip
        buttons = msgspec.json.encode(message.buttons).decode() if message.buttons else None
        await db.execute(
            "INSERT INTO outbox (chain_id, priority, chat_id, text, position, kind, block, created_at, "
            "next_attempt_at, buttons) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            self._chain, message.priority, message.chat_id, message.text, position, message.kind, block, now,
            DUE_AT_ONCE, buttons,
        )  # fmt: skip

    # -- outbox ---------------------------------------------------------------------------------------
    async def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        """The next due message of each chat (most urgent, then oldest), most urgent first across chats."""
        rows = await self._pool.fetch(
            "SELECT id, priority, chat_id, text, position, kind, block, attempts, buttons FROM ("
            "  SELECT *, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY priority DESC, id) AS turn FROM outbox"
            f"  WHERE chain_id = $1 AND {_PENDING} AND next_attempt_at <= $2"
            ") AS due WHERE turn = 1 ORDER BY priority DESC, id LIMIT $3",
            self._chain, now, limit,
        )  # fmt: skip
        return [
            OutboxMessage(
                id=r[0], priority=r[1], chat_id=r[2], text=r[3], position=r[4], kind=r[5], block=r[6], attempts=r[7],
                buttons=_KEYBOARD.decode(r[8]) if r[8] else (),
            )
            for r in rows
        ]

    async def next_attempt_after(self, now: float) -> float | None:
        """When the earliest message deferred past `now` becomes due (None when there is none)."""
        return await self._pool.fetchval(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE chain_id = $1 AND {_PENDING} AND next_attempt_at > $2",
            self._chain, now,
        )  # fmt: skip

    async def pending_count(self, *, alerts_only: bool = False) -> int:
        count = await self._pool.fetchval(
            f"SELECT COUNT(*) FROM outbox WHERE chain_id = $1 AND {_PENDING}"
            + (" AND kind != 'REPLY'" if alerts_only else ""),
            self._chain,
        )
        return int(count)

    async def outbox_stats(self, now: float) -> dict[str, tuple[int, float]]:
        """Unsent messages by kind: (how many, age in seconds of the oldest)."""
        rows = await self._pool.fetch(
            f"SELECT kind, COUNT(*), MIN(created_at) FROM outbox WHERE chain_id = $1 AND {_PENDING} GROUP BY kind",
            self._chain,
        )
        return {r[0]: (int(r[1]), max(0.0, now - r[2])) for r in rows}

    # Ids are unique across chains (one sequence), but the chain id keeps a watcher from touching another's rows.
    async def mark_sent(self, message_id: int, now: float) -> None:
        await self._pool.execute(
            "UPDATE outbox SET sent_at = $1, attempts = attempts + 1 WHERE id = $2 AND chain_id = $3",
            now, message_id, self._chain,
        )  # fmt: skip

    async def mark_sent_many(self, sent: Sequence[tuple[int, float]]) -> None:
        """Marks messages sent, each (id, when), in one transaction."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.executemany(
                "UPDATE outbox SET sent_at = $1, attempts = attempts + 1 WHERE id = $2 AND chain_id = $3",
                [(at, message_id, self._chain) for message_id, at in sent],
            )

    async def defer(self, message_id: int, until: float, error: str) -> None:
        """Puts a message back for a later attempt (rate limit, network trouble)."""
        await self._pool.execute(
            "UPDATE outbox SET next_attempt_at = $1, attempts = attempts + 1, last_error = $2 "
            "WHERE id = $3 AND chain_id = $4",
            until, error, message_id, self._chain,
        )  # fmt: skip

    async def mark_failed(self, message_id: int, now: float, error: str) -> None:
        """Gives up on a message that can never be delivered (chat gone, bot blocked)."""
        await self._pool.execute(
            "UPDATE outbox SET failed_at = $1, attempts = attempts + 1, last_error = $2 WHERE id = $3 AND chain_id = $4",
            now, error, message_id, self._chain,
        )  # fmt: skip


# A transaction whose client went silent (a black-holed link: the server never hears it close) would hold its row
# locks, e.g. a worker's targets, until the operating system's keepalive gives up (hours). No transaction of
# chainwatch waits on its client for long (RPC reads happen outside them), so the server ends one idle this long.
IDLE_IN_TRANSACTION_SECONDS = 15
# The same silence seen from this side: a statement whose answer never comes would hang its caller (a worker
# awaiting its claim) for ever, unnoticed. Past this it fails (TimeoutError, an OSError) like any store failure:
# a duty goes back to standing by, another role's process stops and its supervisor restarts it.
COMMAND_TIMEOUT_SECONDS = 60.0


@asynccontextmanager
async def open_postgres_store(url: str, chain_id: int, *, idle_in_transaction_seconds: float = IDLE_IN_TRANSACTION_SECONDS,
                              command_timeout_seconds: float = COMMAND_TIMEOUT_SECONDS
                              ) -> AsyncIterator[PostgresStore]:  # fmt: skip
    """Connects to `url`, brings its schema up to date, and yields the store of `chain_id` in it."""
    settings = {"idle_in_transaction_session_timeout": str(max(1, round(idle_in_transaction_seconds * 1000)))}
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, server_settings=settings,
                                         command_timeout=command_timeout_seconds)  # fmt: skip
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The driver's message may quote parts of the URL: scrub the password from it, and name the URL redacted.
        raise StorageUnavailable(f"cannot connect to {redacted(url)}: {scrubbed(str(error), url)}") from None
    try:
        async with pool.acquire() as db:
            await migrate(db)
        yield PostgresStore(pool, chain_id)
    finally:
        await pool.close()


def _finite(value: float) -> float:
    # As on SQLite: a sentinel instead of inf, so both engines give back the same figure.
    return value if value != float("inf") else 1e308
