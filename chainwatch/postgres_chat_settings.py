"""The bot's tables on PostgreSQL, for one chain: the same rules as `chat_settings.ChatSettings` on SQLite.

Every change commits before the method returns, so a reply saying "done" is never ahead of the database.
"""

from __future__ import annotations

import time

import asyncpg

from chainwatch.chat_settings import ANY, AddOutcome, ChatSetup, ChatWatch, Mute, ThresholdRule
from chainwatch.roles import WATCHES_CHANNEL


def affected(status: str) -> int:
    """Rows touched, from asyncpg's command status ("UPDATE 3", "DELETE 0", "INSERT 0 1")."""
    return int(status.rsplit(" ", 1)[-1])


async def watches_changed(db: asyncpg.Connection, chain_id: int) -> None:
    """Tells the chain's ingest (LISTEN on WATCHES_CHANNEL) that what it reads changed; delivered on commit only,
    so it never sees the notification before the change."""
    await db.execute("SELECT pg_notify($1, $2)", WATCHES_CHANNEL, str(chain_id))


class PostgresChatSettings:
    def __init__(self, pool: asyncpg.Pool, chain_id: int) -> None:
        self._pool = pool
        self._chain = chain_id

    # -- reading --------------------------------------------------------------------------------------
    async def setup(self) -> ChatSetup:
        async with self._pool.acquire() as db, db.transaction(isolation="repeatable_read", readonly=True):
            # One snapshot: a watch and its chat's pause are read as of the same moment.
            watches = await db.fetch(
                "SELECT chat_id, address, label FROM chat_watches WHERE chain_id = $1 ORDER BY chat_id, created_at, seq",
                self._chain,
            )
            rules = await db.fetch(
                "SELECT chat_id, address, protocol, market, warn, critical FROM thresholds WHERE chain_id = $1",
                self._chain,
            )
            mutes = await db.fetch("SELECT chat_id, address, until FROM mutes WHERE chain_id = $1", self._chain)
            paused = await db.fetch(
                "SELECT chat_id FROM chats WHERE chain_id = $1 AND paused_at IS NOT NULL", self._chain
            )
        return ChatSetup(
            watches=tuple(ChatWatch(chat_id=r[0], address=r[1], label=r[2]) for r in watches),
            rules=tuple(ThresholdRule(chat_id=r[0], address=r[1], protocol=r[2], market=r[3], warn=r[4], critical=r[5])
                        for r in rules),  # fmt: skip
            mutes=tuple(Mute(chat_id=r[0], address=r[1], until=r[2]) for r in mutes),
            paused=frozenset(r[0] for r in paused),
        )

    async def watches_of(self, chat_id: int) -> list[ChatWatch]:
        rows = await self._pool.fetch(
            "SELECT chat_id, address, label FROM chat_watches WHERE chain_id = $1 AND chat_id = $2 "
            "ORDER BY created_at, seq",
            self._chain, chat_id,
        )  # fmt: skip
        return [ChatWatch(chat_id=r[0], address=r[1], label=r[2]) for r in rows]

    # -- chats ----------------------------------------------------------------------------------------
    async def touch_chat(self, chat_id: int, chat_type: str) -> bool:
        """Records that `chat_id` wrote to the bot; returns True when that resumed a paused chat."""
        async with self._pool.acquire() as db, db.transaction():
            row = await db.fetchrow(
                "SELECT paused_at FROM chats WHERE chain_id = $1 AND chat_id = $2 FOR UPDATE", self._chain, chat_id
            )
            if row is None:
                await db.execute(
                    "INSERT INTO chats (chain_id, chat_id, type, created_at) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT DO NOTHING",
                    self._chain, chat_id, chat_type, time.time(),
                )  # fmt: skip
                return False
            if row[0] is None:
                return False
            await db.execute("UPDATE chats SET paused_at = NULL WHERE chain_id = $1 AND chat_id = $2", self._chain, chat_id)
            await watches_changed(db, self._chain)
            return True

    async def pause_chat(self, chat_id: int) -> bool:
        """Telegram refuses this chat: its watches stay, its alerts wait. False for a chat the bot does not know."""
        async with self._pool.acquire() as db, db.transaction():
            status = await db.execute(
                "UPDATE chats SET paused_at = $1 WHERE chain_id = $2 AND chat_id = $3 AND paused_at IS NULL",
                time.time(), self._chain, chat_id,
            )  # fmt: skip
            if affected(status) > 0:
                await watches_changed(db, self._chain)
                return True
            return False

    async def forget_chat(self, chat_id: int) -> None:
        """Deletes everything of `chat_id`: watches, rules, mutes, alert levels and unsent alerts."""
        async with self._pool.acquire() as db, db.transaction():
            for table in ("chat_watches", "thresholds", "mutes", "levels"):
                await db.execute(f"DELETE FROM {table} WHERE chain_id = $1 AND chat_id = $2", self._chain, chat_id)
            await db.execute(
                "UPDATE outbox SET failed_at = $1, last_error = 'the chat asked to be forgotten' "
                "WHERE chain_id = $2 AND chat_id = $3 AND sent_at IS NULL AND failed_at IS NULL",
                time.time(), self._chain, chat_id,
            )  # fmt: skip
            await db.execute("DELETE FROM chats WHERE chain_id = $1 AND chat_id = $2", self._chain, chat_id)
            await watches_changed(db, self._chain)

    # -- watches --------------------------------------------------------------------------------------
    async def add_watch(self, chat_id: int, chat_type: str, address: str, label: str | None, *, limit: int) -> AddOutcome:
        async with self._pool.acquire() as db, db.transaction():
            await db.execute(
                "INSERT INTO chats (chain_id, chat_id, type, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                self._chain, chat_id, chat_type, time.time(),
            )  # fmt: skip
            # Locks the chat's row: two /add at once in one chat must not both pass the limit check.
            await db.execute("SELECT 1 FROM chats WHERE chain_id = $1 AND chat_id = $2 FOR UPDATE", self._chain, chat_id)
            rows = await db.fetch(
                "SELECT address, label FROM chat_watches WHERE chain_id = $1 AND chat_id = $2", self._chain, chat_id
            )
            mine = {r[0]: r[1] for r in rows}
            if label is not None and any(
                a != address and other is not None and other.casefold() == label.casefold() for a, other in mine.items()
            ):
                return AddOutcome.LABEL_TAKEN
            if address in mine:
                if label is None or label == mine[address]:
                    return AddOutcome.UNCHANGED
                await db.execute(
                    "UPDATE chat_watches SET label = $1 WHERE chain_id = $2 AND chat_id = $3 AND address = $4",
                    label, self._chain, chat_id, address,
                )  # fmt: skip
                await watches_changed(db, self._chain)
                return AddOutcome.RELABELLED
            if len(mine) >= limit:
                return AddOutcome.LIMIT_REACHED
            await db.execute(
                "INSERT INTO chat_watches (chain_id, chat_id, address, label, created_at) VALUES ($1, $2, $3, $4, $5)",
                self._chain, chat_id, address, label, time.time(),
            )  # fmt: skip
            await watches_changed(db, self._chain)
            return AddOutcome.ADDED

    async def remove_watch(self, chat_id: int, address: str) -> bool:
        """Stops `chat_id` watching `address`, with its rules, mute and alert levels; False if it was not watched."""
        async with self._pool.acquire() as db, db.transaction():
            status = await db.execute(
                "DELETE FROM chat_watches WHERE chain_id = $1 AND chat_id = $2 AND address = $3",
                self._chain, chat_id, address,
            )  # fmt: skip
            if affected(status) == 0:
                return False
            for table in ("thresholds", "mutes"):
                await db.execute(
                    f"DELETE FROM {table} WHERE chain_id = $1 AND chat_id = $2 AND address = $3",
                    self._chain, chat_id, address,
                )  # fmt: skip
            await db.execute(
                "DELETE FROM levels WHERE chain_id = $1 AND chat_id = $2 AND account = $3", self._chain, chat_id, address
            )
            await watches_changed(db, self._chain)
            return True

    # -- thresholds -----------------------------------------------------------------------------------
    async def set_rule(self, rule: ThresholdRule) -> None:
        await self._changing(
            "INSERT INTO thresholds (chain_id, chat_id, address, protocol, market, warn, critical) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (chain_id, chat_id, address, protocol, market) "
            "DO UPDATE SET warn = excluded.warn, critical = excluded.critical",
            self._chain, rule.chat_id, rule.address, rule.protocol, rule.market, rule.warn, rule.critical,
        )  # fmt: skip

    async def reset_rule(self, chat_id: int, address: str, protocol: str, market: str) -> bool:
        status = await self._changing(
            "DELETE FROM thresholds WHERE chain_id = $1 AND chat_id = $2 AND address = $3 AND protocol = $4 "
            "AND market = $5",
            self._chain, chat_id, address, protocol, market,
        )  # fmt: skip
        return affected(status) > 0

    # -- mutes ----------------------------------------------------------------------------------------
    async def mute(self, mute: Mute) -> None:
        await self._changing(
            "INSERT INTO mutes (chain_id, chat_id, address, until) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (chain_id, chat_id, address) DO UPDATE SET until = excluded.until",
            self._chain, mute.chat_id, mute.address, mute.until,
        )  # fmt: skip

    async def unmute(self, chat_id: int, address: str) -> int:
        """Lifts the mute of `address` (ANY: every mute of the chat); returns how many were lifted."""
        if address == ANY:
            status = await self._changing("DELETE FROM mutes WHERE chain_id = $1 AND chat_id = $2", self._chain, chat_id)
        else:
            status = await self._changing(
                "DELETE FROM mutes WHERE chain_id = $1 AND chat_id = $2 AND address = $3", self._chain, chat_id, address
            )
        return affected(status)

    async def _changing(self, statement: str, *arguments: object) -> str:
        """One statement that changes what the ingest reads, and its notification if it changed anything."""
        async with self._pool.acquire() as db, db.transaction():
            status: str = await db.execute(statement, *arguments)
            if affected(status) > 0:
                await watches_changed(db, self._chain)
            return status
