"""What each chat set up through the bot, durably: its watched addresses and labels, threshold rules, mutes,
and whether Telegram still lets the bot write to it.

Every change commits before the method returns, so a reply saying "done" is never ahead of the file.
"""

from __future__ import annotations

import asyncio
import enum
import time
from typing import Any

import aiosqlite

from chainwatch.model import Record
from chainwatch.schema import transaction

ANY = ""  # in a rule or a mute: every address (of the chat), every protocol, every market


class ChatWatch(Record, frozen=True, kw_only=True):
    chat_id: int
    address: str  # EIP-55
    label: str | None = None


class ThresholdRule(Record, frozen=True, kw_only=True):
    """Thresholds a chat set at one level: the whole chat, an address, a protocol of it, or one market."""

    chat_id: int
    address: str = ANY
    protocol: str = ANY
    market: str = ANY  # lower-case; matched as a prefix of the position's market
    warn: float
    critical: float


class Mute(Record, frozen=True, kw_only=True):
    chat_id: int
    address: str = ANY
    until: float | None = None  # wall-clock seconds; None until /unmute


class ChatSetup(Record, frozen=True, kw_only=True):
    """Everything every chat set up: what the alert directory is built from."""

    watches: tuple[ChatWatch, ...] = ()
    rules: tuple[ThresholdRule, ...] = ()
    mutes: tuple[Mute, ...] = ()
    paused: frozenset[int] = frozenset()


class AddOutcome(enum.Enum):
    ADDED = "added"
    RELABELLED = "relabelled"
    UNCHANGED = "unchanged"
    LIMIT_REACHED = "limit reached"
    LABEL_TAKEN = "label taken"


class ChatSettings:
    """The bot's tables, on the store's connection and under the store's lock (see `Store`)."""

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._db = db
        self._lock = lock

    async def _rows(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._lock, self._db.execute(sql, parameters) as cursor:
            return list(await cursor.fetchall())

    async def _one_row(self, sql: str, parameters: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        async with self._db.execute(sql, parameters) as cursor:
            return await cursor.fetchone()

    # -- reading --------------------------------------------------------------------------------------
    async def setup(self) -> ChatSetup:
        watches = await self._rows("SELECT chat_id, address, label FROM chat_watches ORDER BY chat_id, created_at")
        rules = await self._rows("SELECT chat_id, address, protocol, market, warn, critical FROM thresholds")
        mutes = await self._rows("SELECT chat_id, address, until FROM mutes")
        paused = await self._rows("SELECT chat_id FROM chats WHERE paused_at IS NOT NULL")
        return ChatSetup(
            watches=tuple(ChatWatch(chat_id=r[0], address=r[1], label=r[2]) for r in watches),
            rules=tuple(ThresholdRule(chat_id=r[0], address=r[1], protocol=r[2], market=r[3], warn=r[4], critical=r[5])
                        for r in rules),  # fmt: skip
            mutes=tuple(Mute(chat_id=r[0], address=r[1], until=r[2]) for r in mutes),
            paused=frozenset(r[0] for r in paused),
        )

    async def watches_of(self, chat_id: int) -> list[ChatWatch]:
        rows = await self._rows(
            "SELECT chat_id, address, label FROM chat_watches WHERE chat_id = ? ORDER BY created_at", (chat_id,)
        )
        return [ChatWatch(chat_id=r[0], address=r[1], label=r[2]) for r in rows]

    # -- chats ----------------------------------------------------------------------------------------
    async def touch_chat(self, chat_id: int, chat_type: str) -> bool:
        """Records that `chat_id` wrote to the bot; returns True when that resumed a paused chat."""
        async with self._lock, transaction(self._db):
            row = await self._one_row("SELECT paused_at FROM chats WHERE chat_id = ?", (chat_id,))
            if row is None:
                await self._db.execute(
                    "INSERT INTO chats (chat_id, type, created_at) VALUES (?, ?, ?)", (chat_id, chat_type, time.time())
                )
                return False
            if row[0] is None:
                return False
            await self._db.execute("UPDATE chats SET paused_at = NULL WHERE chat_id = ?", (chat_id,))
            return True

    async def pause_chat(self, chat_id: int) -> bool:
        """Telegram refuses this chat (blocked, gone): its watches stay, its alerts wait for it to write again.
        Returns False when the chat is not one the bot knows (an operator's chat)."""
        async with self._lock, transaction(self._db):
            cursor = await self._db.execute(
                "UPDATE chats SET paused_at = ? WHERE chat_id = ? AND paused_at IS NULL", (time.time(), chat_id)
            )
            return cursor.rowcount > 0

    async def forget_chat(self, chat_id: int) -> None:
        """Deletes everything of `chat_id`: watches, rules, mutes, alert levels and unsent alerts."""
        async with self._lock, transaction(self._db):
            for table in ("chat_watches", "thresholds", "mutes", "levels"):
                await self._db.execute(f"DELETE FROM {table} WHERE chat_id = ?", (chat_id,))
            await self._db.execute(
                "UPDATE outbox SET failed_at = ?, last_error = 'the chat asked to be forgotten' "
                "WHERE chat_id = ? AND sent_at IS NULL AND failed_at IS NULL",
                (time.time(), chat_id),
            )
            await self._db.execute("DELETE FROM chats WHERE chat_id = ?", (chat_id,))

    # -- watches --------------------------------------------------------------------------------------
    async def add_watch(self, chat_id: int, chat_type: str, address: str, label: str | None, *, limit: int) -> AddOutcome:
        async with self._lock, transaction(self._db):
            await self._db.execute(
                "INSERT OR IGNORE INTO chats (chat_id, type, created_at) VALUES (?, ?, ?)",
                (chat_id, chat_type, time.time()),
            )
            async with self._db.execute("SELECT address, label FROM chat_watches WHERE chat_id = ?", (chat_id,)) as c:
                mine = {r[0]: r[1] for r in await c.fetchall()}
            if label is not None and any(
                a != address and other is not None and other.casefold() == label.casefold() for a, other in mine.items()
            ):
                return AddOutcome.LABEL_TAKEN
            if address in mine:
                if label is None or label == mine[address]:
                    return AddOutcome.UNCHANGED
                await self._db.execute(
                    "UPDATE chat_watches SET label = ? WHERE chat_id = ? AND address = ?", (label, chat_id, address)
                )
                return AddOutcome.RELABELLED
            if len(mine) >= limit:
                return AddOutcome.LIMIT_REACHED
            await self._db.execute(
                "INSERT INTO chat_watches (chat_id, address, label, created_at) VALUES (?, ?, ?, ?)",
                (chat_id, address, label, time.time()),
            )
            return AddOutcome.ADDED

    async def remove_watch(self, chat_id: int, address: str) -> bool:
        """Stops `chat_id` watching `address`, with its rules, mute and alert levels; False if it was not watched."""
        async with self._lock, transaction(self._db):
            cursor = await self._db.execute(
                "DELETE FROM chat_watches WHERE chat_id = ? AND address = ?", (chat_id, address)
            )
            if cursor.rowcount == 0:
                return False
            for table in ("thresholds", "mutes"):
                await self._db.execute(f"DELETE FROM {table} WHERE chat_id = ? AND address = ?", (chat_id, address))
            await self._db.execute("DELETE FROM levels WHERE chat_id = ? AND account = ?", (chat_id, address))
            return True

    # -- thresholds -----------------------------------------------------------------------------------
    async def set_rule(self, rule: ThresholdRule) -> None:
        async with self._lock, transaction(self._db):
            await self._db.execute(
                "INSERT INTO thresholds (chat_id, address, protocol, market, warn, critical) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (chat_id, address, protocol, market) DO UPDATE SET warn = excluded.warn, "
                "critical = excluded.critical",
                (rule.chat_id, rule.address, rule.protocol, rule.market, rule.warn, rule.critical),
            )

    async def reset_rule(self, chat_id: int, address: str, protocol: str, market: str) -> bool:
        async with self._lock, transaction(self._db):
            cursor = await self._db.execute(
                "DELETE FROM thresholds WHERE chat_id = ? AND address = ? AND protocol = ? AND market = ?",
                (chat_id, address, protocol, market),
            )
            return cursor.rowcount > 0

    # -- mutes ----------------------------------------------------------------------------------------
    async def mute(self, mute: Mute) -> None:
        async with self._lock, transaction(self._db):
            await self._db.execute(
                "INSERT INTO mutes (chat_id, address, until) VALUES (?, ?, ?) "
                "ON CONFLICT (chat_id, address) DO UPDATE SET until = excluded.until",
                (mute.chat_id, mute.address, mute.until),
            )

    async def unmute(self, chat_id: int, address: str) -> int:
        """Lifts the mute of `address` (ANY: every mute of the chat); returns how many were lifted."""
        async with self._lock, transaction(self._db):
            if address == ANY:
                cursor = await self._db.execute("DELETE FROM mutes WHERE chat_id = ?", (chat_id,))
            else:
                cursor = await self._db.execute(
                    "DELETE FROM mutes WHERE chat_id = ? AND address = ?", (chat_id, address)
                )
            return cursor.rowcount
