"""`chainwatch migrate`: a SQLite file's state arrives in PostgreSQL whole, once, and the watcher sees the same."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from chainwatch.chat_settings import Mute, ThresholdRule
from chainwatch.cli import main
from chainwatch.model import AlertKind, Level, PositionKey
from chainwatch.storage import open_store
from chainwatch.storage_port import StorePort
from chainwatch.store import BlockRef, Button, LevelChange, PendingMessage, StoredLevel
from chainwatch.store_copy import copy_sqlite_to_postgres
from tests.integration.test_store_port import fresh_database

CHAIN = 143
ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"
OTHER = "0x" + "11" * 20


async def fill(store: StorePort) -> None:
    """A watcher's state mid-flight: two chats' settings, levels, a sent alert, and three unsent messages."""
    await store.save_cursor(BlockRef(number=1234, hash="0xfeed"))
    await store.chats.add_watch(1, "private", ACCOUNT, "vault", limit=5)
    await store.chats.add_watch(1, "private", OTHER, None, limit=5)
    await store.chats.add_watch(2, "group", ACCOUNT, None, limit=5)
    await store.chats.set_rule(ThresholdRule(chat_id=1, address=ACCOUNT, warn=2.0, critical=1.5))
    await store.chats.mute(Mute(chat_id=2, address=ACCOUNT, until=None))
    await store.chats.pause_chat(2)
    for n, (chat, kind) in enumerate([(1, AlertKind.WARN), (1, AlertKind.CRITICAL), (2, AlertKind.WARN)]):
        await store.record([LevelChange(
            chat_id=chat, key=PositionKey(protocol="aave_v3", account=f"0x{n:040x}"),
            level=StoredLevel(level=Level.WARN, health_factor=1.1 + n, block=100 + n),
            message=PendingMessage(priority=kind.priority, chat_id=chat, text=f"alert {n}", kind=kind.value,
                                   buttons=((Button(text="Mute", data=f"m:{n}"),),)),
        )])  # fmt: skip
    await store.queue_replies(1, ["reply"])
    sent = (await store.due_messages(time.time() + 1))[0]  # "alert 1": the CRITICAL is chat 1's first
    await store.mark_sent(sent.id, time.time())


async def snapshot(store: StorePort) -> tuple[object, ...]:
    """What a watcher reads at start-up and sends next, ids aside (they are each engine's own)."""
    order: list[tuple[str, tuple[object, ...], int]] = []
    while due := await store.due_messages(time.time() + 1, limit=1):
        order.append((due[0].text, due[0].buttons, due[0].attempts))
        await store.mark_sent(due[0].id, time.time())
    return await store.cursor(), await store.levels(), await store.chats.setup(), order


async def test_copy_carries_everything_a_restarted_watcher_needs(tmp_path: Path, postgres_url: str) -> None:
    """Cursor, chats, watches, rules, mutes, pauses, levels and the unsent outbox (in send order) all arrive."""
    source, target = tmp_path / "watcher.db", await fresh_database(postgres_url)
    async with open_store(source) as sqlite:
        await fill(sqlite)
    copied = await copy_sqlite_to_postgres(source, target, CHAIN)
    assert copied["outbox"] == 3 and copied["levels"] == 3 and copied["chat_watches"] == 3
    async with open_store(source) as sqlite, open_store(target, chain_id=CHAIN) as postgres:
        expected, got = await snapshot(sqlite), await snapshot(postgres)
    assert got == expected
    assert [text for text, _, _ in expected[3]] == ["reply", "alert 0", "alert 2"]  # type: ignore[index]


def test_migrate_command_copies_once_and_refuses_a_second_time(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second migrate of the same chain is refused in one line, and the target keeps one copy, no password shown."""
    source = tmp_path / "watcher.db"
    target = asyncio.run(fresh_database(postgres_url)).replace("postgresql://postgres:@", "postgresql://postgres:pa55word@")

    async def prepare() -> None:
        async with open_store(source) as sqlite:
            await fill(sqlite)

    asyncio.run(prepare())
    args = ["migrate", "--from", str(source), "--to", target, "--chain-id", str(CHAIN)]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "3 outbox" in first.out and "pa55word" not in first.out + first.err
    assert main(args) == 1
    second = capsys.readouterr()
    assert second.err.count("\n") == 1 and "already holds chain 143" in second.err and "pa55word" not in second.err

    async def pending_in_target() -> int:
        db = await asyncpg.connect(target)
        try:
            return int(await db.fetchval("SELECT COUNT(*) FROM outbox WHERE chain_id = $1", CHAIN))
        finally:
            await db.close()

    assert asyncio.run(pending_in_target()) == 3
