"""`chainwatch run --role sender` as separate processes on a real PostgreSQL and a fake Bot API over HTTP: one
active sender per token, a standby that takes over from a SIGKILL, every message sent once (at most the one in
flight twice), and each process's /metrics and /health saying which it is."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from chainwatch.model import AlertKind
from chainwatch.roles import OUTBOX_CHANNEL, WATCHES_CHANNEL
from chainwatch.storage import open_store
from chainwatch.storage_port import StorePort
from chainwatch.chat_settings import Mute
from tests.integration.test_store_port import change, fresh_database, position
from tests.support.botapi import BotApiServer, running_bot_api
from tests.support.roles import CHAINWATCH, DEADLINE, RoleProcess, role_processes



TOKEN = "123456:ROLES-token-never-logged"
CHAIN_ID = 31337


def role_config(path: Path, storage: str, bot_api: BotApiServer | None = None, *, messages_per_second: float = 20,
                concurrent_sends: int = 1, chain_id: int = CHAIN_ID) -> Path:  # fmt: skip
    """A config a sender or bot needs: no chain is reached by them (the endpoint is a closed port). One send in
    flight at a time: a killed sender then repeats at most that one (with N in flight, up to N)."""
    telegram = "" if bot_api is None else f"""
[telegram]
token = "{TOKEN}"
api_base = "{bot_api.base_url}"
default_chat_id = 1
per_chat_interval = 0
messages_per_second = {messages_per_second}
concurrent_sends = {concurrent_sends}
"""
    path.write_text(f"""
[chain]
chain_id = {chain_id}
ws_urls = ["ws://127.0.0.1:9"]

{telegram}

[storage]
{storage}

[[protocols]]
kind = "aave_v3"
name = "neverland"
pool_addresses_provider = "0x52908400098527886E0F7030069857D2E4169EE7"
""")
    return path


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    async with running_bot_api(TOKEN) as server:
        yield server


async def queue_alerts(url: str, count: int) -> list[str]:
    """`count` CRITICAL alerts, each to its own chat, written as the engine writes them; their texts."""
    texts = [f"CRITICAL alert {n}" for n in range(count)]
    async with open_store(url, chain_id=CHAIN_ID) as store:
        await store.record([change(position(n), AlertKind.CRITICAL, chat_id=5000 + n, text=texts[n])
                            for n in range(count)])  # fmt: skip
    return texts


async def get(address: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{address}{path}") as response:
        return response.status, await response.text()


def role_active(metrics_text: str, role: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'chainwatch_role_active{{role="{role}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no chainwatch_role_active for {role} in /metrics")


async def test_a_standby_sender_takes_over_from_a_sigkill_and_every_message_goes_once(
    tmp_path: Path, postgres_url: str, bot_api: BotApiServer
) -> None:
    url = await fresh_database(postgres_url)
    config = role_config(tmp_path / "roles.toml", f'url = "{url}"', bot_api)
    bot_api.send_delay = 0.05  # a send in flight when the kill lands: the one message that may go twice
    async with role_processes() as start:
        first: RoleProcess = await start(config, "sender-a", "sender")
        await first.wait_logged("role.active", role="sender")
        second: RoleProcess = await start(config, "sender-b", "sender")
        await second.wait_logged("role.standby", role="sender")
        addresses = {p.name: await p.metrics_address() for p in (first, second)}

        # (d) each process's /metrics and /health say which one is active; a standby is healthy.
        _, active_metrics = await get(addresses["sender-a"], "/metrics")
        _, standby_metrics = await get(addresses["sender-b"], "/metrics")
        assert role_active(active_metrics, "sender") == 1.0
        assert role_active(standby_metrics, "sender") == 0.0
        status, health = await get(addresses["sender-b"], "/health")
        assert status == 200 and json.loads(health)["roles"] == {"sender": "standby"}
        assert json.loads(health)["name"] == "sender-b"
        status, health = await get(addresses["sender-a"], "/health")
        assert status == 200 and json.loads(health)["roles"] == {"sender": "active"}

        texts = await queue_alerts(url, 60)
        # 20 messages/s: the kill lands with most of the 60 still queued.
        await bot_api.wait_until(lambda: len(bot_api.messages) >= 10, "10 messages sent", timeout=DEADLINE)
        first.kill()
        killed_at = time.monotonic()
        assert await first.ended() != 0
        await second.wait_logged("role.active", role="sender")
        await bot_api.wait_until(lambda: {m.text for m in bot_api.messages} >= set(texts), "every alert sent",
                                 timeout=DEADLINE)  # fmt: skip
        after_kill = [m.received_at for m in bot_api.messages if m.received_at > killed_at]
        assert after_kill, "the standby sent nothing after the kill"
        print(f"\nkill -> first message sent by the standby: {after_kill[0] - killed_at:.2f} s")

        counts = collections.Counter(m.text for m in bot_api.messages)
        assert set(counts) == set(texts)
        assert sum(n - 1 for n in counts.values()) <= 1, f"more than the one message in flight went twice: {counts}"
        _, taken_over = await get(addresses["sender-b"], "/metrics")
        assert role_active(taken_over, "sender") == 1.0
        async with open_store(url, chain_id=CHAIN_ID) as store:
            await until_outbox_empty(store)


async def test_a_sender_of_another_chain_on_the_same_token_stops_with_one_line_instead_of_waiting_for_ever(
    tmp_path: Path, postgres_url: str, bot_api: BotApiServer
) -> None:
    url = await fresh_database(postgres_url)
    ours = role_config(tmp_path / "ours.toml", f'url = "{url}"', bot_api)
    theirs = role_config(tmp_path / "theirs.toml", f'url = "{url}"', bot_api, chain_id=10143)
    async with role_processes() as start:
        first: RoleProcess = await start(ours, "sender-a", "sender")
        await first.wait_logged("role.active", role="sender")
        standby: RoleProcess = await start(ours, "sender-b", "sender")  # the same chain: a standby, as before
        await standby.wait_logged("role.standby", role="sender")
        other: RoleProcess = await start(theirs, "sender-c", "sender")
        assert await other.ended() != 0  # it would never send chain 10143's alerts: it says so and stops
        said = [line for line in other.lines if line.startswith("chainwatch:")]
        assert len(said) == 1 and "chain 31337" in said[0] and "chain 10143 its own bot token" in said[0], said
        assert all(TOKEN not in line and TOKEN.split(":")[1] not in line for line in other.lines)
        assert first.process.returncode is None and standby.process.returncode is None
        assert standby.logged("role.active", role="sender") is None


async def until_outbox_empty(store: StorePort) -> None:
    """The last send's record commits just after Telegram answered: poll the store for it, deadline-bound."""
    async with asyncio.timeout(DEADLINE):
        while await store.pending_count():
            await asyncio.sleep(0.05)  # polling a condition in another process's hands, with a deadline


async def test_the_sender_is_woken_by_the_outbox_notification_in_the_writing_transaction(
    postgres_url: str,
) -> None:
    """The store NOTIFYs OUTBOX_CHANNEL (payload: the chain id) when it queues messages, and only on commit."""
    url = await fresh_database(postgres_url)
    listener = await asyncpg.connect(url)
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    try:
        await listener.add_listener(OUTBOX_CHANNEL, lambda _c, _p, channel, payload: heard.put_nowait((channel, payload)))
        await listener.add_listener(WATCHES_CHANNEL, lambda _c, _p, channel, payload: heard.put_nowait((channel, payload)))
        async with open_store(url, chain_id=CHAIN_ID) as store:
            await store.record([change(position(1), AlertKind.WARN)])
            async with asyncio.timeout(DEADLINE):
                assert await heard.get() == (OUTBOX_CHANNEL, str(CHAIN_ID))
            await store.record([change(position(2), None)])  # a level change with no message wakes nobody
            await store.queue_replies(7, ["hello"])
            async with asyncio.timeout(DEADLINE):
                assert await heard.get() == (OUTBOX_CHANNEL, str(CHAIN_ID))
            await store.chats.touch_chat(7, "private")  # a new chat changes nothing the ingest reads
            await store.chats.mute(Mute(chat_id=7, address=position(1).account, until=None))
            async with asyncio.timeout(DEADLINE):
                assert await heard.get() == (WATCHES_CHANNEL, str(CHAIN_ID))
            assert await store.chats.unmute(7, position(2).account) == 0  # nothing changed: nobody woken
            assert await store.chats.unmute(7, position(1).account) == 1
            async with asyncio.timeout(DEADLINE):
                assert await heard.get() == (WATCHES_CHANNEL, str(CHAIN_ID))
            assert heard.empty()
    finally:
        await listener.close()


async def run_cli(*arguments: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *CHAINWATCH, *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(DEADLINE):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_role_on_sqlite_is_one_line_naming_the_option_and_the_setting(tmp_path: Path) -> None:
    config = role_config(tmp_path / "sqlite.toml", f'path = "{tmp_path / "x.db"}"')
    status, stderr = await run_cli("run", "--config", str(config), "--role", "sender")
    assert status != 0
    assert stderr.count("\n") == 1 and "--role" in stderr and "[storage] url" in stderr, stderr


async def test_unknown_role_is_one_line_listing_the_valid_ones(tmp_path: Path, postgres_url: str) -> None:
    config = role_config(tmp_path / "pg.toml", f'url = "{postgres_url}"')
    status, stderr = await run_cli("run", "--config", str(config), "--role", "sender", "--role", "janitor")
    assert status != 0
    assert stderr.count("\n") == 1 and "'janitor'" in stderr, stderr
    assert all(role in stderr for role in ("ingest", "worker", "sender", "bot")), stderr


def test_a_role_whose_module_is_missing_is_one_line_not_a_traceback(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ingest and worker are in a build without them: the role is named, nothing starts."""
    from chainwatch import cli, roles

    monkeypatch.setitem(roles.RUNNERS, "ingest", "chainwatch.roles.not_in_this_build:run")
    config = role_config(tmp_path / "pg.toml", f'url = "{postgres_url}"')
    status = cli.main(["run", "--config", str(config), "--role", "ingest", "--role", "sender"])
    stderr = capsys.readouterr().err
    assert status != 0 and stderr.count("\n") == 1 and "--role ingest" in stderr and "Traceback" not in stderr, stderr


async def test_bad_metrics_listen_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    config = role_config(tmp_path / "pg.toml", f'url = "{postgres_url}"')
    status, stderr = await run_cli("run", "--config", str(config), "--role", "sender", "--metrics-listen", "nowhere")
    assert status != 0 and stderr.count("\n") == 1 and "--metrics-listen" in stderr, stderr
