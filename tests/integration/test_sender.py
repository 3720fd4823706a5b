"""The sender end to end: a real aiogram Bot over HTTP to the fake Bot API server, a real SQLite outbox file."""

from __future__ import annotations

import asyncio
import io
import socket
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
import structlog

from chainwatch.alerts.sender import RetryLater, Scope, Sender, TransportBroken, Undeliverable
from chainwatch.alerts.telegram import StdoutTransport, TelegramTransport
from chainwatch.model import AlertKind, Level, PositionKey
from chainwatch.store import LevelChange, PendingMessage, Store, StoredLevel, open_store
from tests.support.botapi import BotApiServer, running_bot_api

TOKEN = "123456789:AAH-test_secret-Token-0123456789abcdef"
SECRET = TOKEN.partition(":")[2]
DEFAULT_CHAT = 555


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    async with running_bot_api(TOKEN) as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chainwatch.sqlite"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    async with open_store(db_path) as s:
        yield s


@pytest.fixture
async def transport(bot_api: BotApiServer) -> AsyncIterator[TelegramTransport]:
    async with TelegramTransport(TOKEN, bot_api.base_url, DEFAULT_CHAT) as t:
        yield t


_accounts = iter(range(1, 1_000_000))


async def queue(store: Store, kind: AlertKind, chat_id: int | None, text: str | None = None) -> str:
    """Queues one alert the way the alert stage does (a level change plus its message); returns its text."""
    n = next(_accounts)
    text = text if text is not None else f"{kind.value} #{n} for chat {chat_id}"
    await store.record([
        LevelChange(
            key=PositionKey(protocol="aave_v3", account=f"0x{n:040x}"),
            level=StoredLevel(level=Level.WARN, health_factor=1.05, block=1000 + n),
            message=PendingMessage(priority=kind.priority, chat_id=chat_id, text=text, kind=kind.value),
        )
    ])
    return text


async def outbox_rows(db_path: Path) -> list[dict[str, object]]:
    async with aiosqlite.connect(db_path) as db:
        db.row_factory = aiosqlite.Row
        async with db.execute("SELECT * FROM outbox ORDER BY id") as rows:
            return [dict(r) async for r in rows]


def count_rankings(store: Store) -> list[float]:
    """Wraps the real store's due_messages: the list grows by one entry (the `now` asked at) per ranking."""
    calls: list[float] = []
    ranked = store.due_messages

    async def counted(now: float, limit: int = 100):  # type: ignore[no-untyped-def]
        calls.append(now)
        return await ranked(now, limit)

    store.due_messages = counted  # type: ignore[method-assign]
    return calls


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until_idle(task: asyncio.Task[object], timeout: float = 5.0) -> None:
    """Yields to the loop until the sender task is parked in its wait (found in its await chain), or fails."""
    deadline = time.monotonic() + timeout
    while not _awaits(task, "Sender._wait"):
        assert time.monotonic() < deadline, "the sender never went idle"
        await asyncio.sleep(0)


def _awaits(task: asyncio.Task[object], qualname: str) -> bool:
    coro: object = task.get_coro()
    while coro is not None:
        if getattr(coro, "__qualname__", None) == qualname:
            return True
        coro = getattr(coro, "cr_await", None)
    return False


def assert_no_secret(text: str) -> None:
    assert TOKEN not in text and SECRET not in text, text


class TestOrder:
    async def test_backlog_goes_most_urgent_first(self, store: Store, transport: TelegramTransport,
                                                  bot_api: BotApiServer) -> None:
        """Among chats free to receive, messages go by priority, then by age."""
        texts = {
            chat: await queue(store, kind, chat)
            for chat, kind in [(1, AlertKind.RECOVERED), (2, AlertKind.WARN), (3, AlertKind.LIQUIDATABLE),
                               (4, AlertKind.CRITICAL), (5, AlertKind.WARN), (6, AlertKind.LIQUIDATABLE)]
        }
        assert await Sender(store, transport).drain(soon()) == 0
        assert [m.text for m in bot_api.messages] == [texts[c] for c in (3, 6, 4, 2, 5, 1)]

    async def test_message_without_chat_goes_to_the_default_chat(self, store: Store, transport: TelegramTransport,
                                                                 bot_api: BotApiServer) -> None:
        """chat_id None means the configured default chat."""
        text = await queue(store, AlertKind.WARN, None)
        assert await Sender(store, transport).drain(soon()) == 0
        assert [(m.chat_id, m.text) for m in bot_api.messages] == [(DEFAULT_CHAT, text)]


class TestPerPositionOrder:
    async def test_newer_alert_supersedes_stale_ones_of_a_position(self, store: Store, db_path: Path) -> None:
        """WARN, RECOVERED, WARN for one position while unsent: only the newest WARN is left to send."""
        key = PositionKey(protocol="aave_v3", account="0x" + "ab" * 20)
        for block, kind in ((100, AlertKind.WARN), (101, AlertKind.RECOVERED), (102, AlertKind.WARN)):
            message = PendingMessage(priority=kind.priority, chat_id=7, text=f"{kind.value}@{block}", kind=kind.value)
            level = StoredLevel(level=Level.WARN, health_factor=1.4, block=block)
            await store.record([LevelChange(key=key, level=level, message=message)])
        assert [m.text for m in await store.due_messages(time.time() + 1)] == ["WARN@102"]
        superseded = [r for r in await outbox_rows(db_path) if r["last_error"] == "superseded by a newer alert"]
        assert [r["text"] for r in superseded] == ["WARN@100", "RECOVERED@101"]

    async def test_more_urgent_older_alert_still_goes_first(self, store: Store) -> None:
        """LIQUIDATABLE then RECOVERED for one position: both stay, and the liquidation goes out first."""
        key = PositionKey(protocol="aave_v3", account="0x" + "cd" * 20)
        for block, kind in ((100, AlertKind.LIQUIDATABLE), (101, AlertKind.RECOVERED)):
            message = PendingMessage(priority=kind.priority, chat_id=7, text=f"{kind.value}@{block}", kind=kind.value)
            level = StoredLevel(level=Level.OK, health_factor=2.0, block=block)
            await store.record([LevelChange(key=key, level=level, message=message)])
        (first,) = await store.due_messages(time.time() + 1)
        assert first.text == "LIQUIDATABLE@100"


class TestLimits:
    async def test_one_message_per_chat_per_second_without_holding_back_others(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """Chat 101's three alerts are a second apart; chat 202's first does not wait behind them."""
        for chat in (101, 101, 101, 202, 202):
            await queue(store, AlertKind.WARN, chat)
        assert await Sender(store, transport, per_chat_interval=1.0).drain(soon()) == 0
        a, b = bot_api.messages_to(101), bot_api.messages_to(202)
        assert (len(a), len(b)) == (3, 2)
        assert all(later.received_at - earlier.received_at >= 0.95 for earlier, later in zip(a, a[1:]))
        assert b[1].received_at - b[0].received_at >= 0.95
        assert b[0].received_at < a[1].received_at
        assert b[0].received_at - a[0].received_at < 0.5

    async def test_a_busy_chat_cannot_starve_another(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """A backlog larger than the sender's batch, all for one chat, does not hold back another chat's alert."""
        for _ in range(30):
            await queue(store, AlertKind.CRITICAL, 101)
        await queue(store, AlertKind.WARN, 202)  # less urgent and newest: it would sort last in one global list
        sender = Sender(store, transport, per_chat_interval=1.0, batch=5)
        await sender.drain(soon(2.5))
        assert len(bot_api.messages_to(202)) == 1
        assert bot_api.messages_to(202)[0].received_at - bot_api.messages[0].received_at < 0.5

    async def test_429_is_retried_after_retry_after_and_arrives_once(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """A 429 holds that chat for retry_after, not other chats; the message then arrives exactly once."""
        bot_api.fail_next(1, status=429, retry_after=1)
        urgent = await queue(store, AlertKind.LIQUIDATABLE, 1)
        other = await queue(store, AlertKind.WARN, 2)
        sender = Sender(store, transport)
        with structlog.testing.capture_logs() as logs:
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(sender.run())
                await bot_api.wait_for_messages(2, timeout=5)
                running.cancel()
        throttled = bot_api.requests[0]
        assert throttled.status == 429
        assert [m.text for m in bot_api.messages] == [other, urgent]
        assert bot_api.messages_to(1)[0].received_at - throttled.received_at >= 0.99
        assert bot_api.messages_to(2)[0].received_at - throttled.received_at < 0.5
        rows = await outbox_rows(db_path)
        assert [(r["sent_at"] is not None, r["attempts"]) for r in rows] == [(True, 2), (True, 1)]
        assert "429" in str(rows[0]["last_error"]) or "retry" in str(rows[0]["last_error"]).lower()
        assert [e["event"] for e in logs if e["event"].startswith("alert.")] == [
            "alert.deferred", "alert.sent", "alert.sent"
        ]
        assert logs[0]["scope"] == "chat" and logs[0]["retry_in"] == 1.0


class TestFailures:
    async def test_403_marks_failed_and_the_rest_continue(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """A chat that blocked the bot gets its message marked failed; other chats still get theirs."""
        bot_api.block_chat(3)
        await queue(store, AlertKind.LIQUIDATABLE, 3)
        rest = [await queue(store, AlertKind.WARN, chat) for chat in (4, 5)]
        with structlog.testing.capture_logs() as logs:
            assert await Sender(store, transport).drain(soon()) == 0
        assert [m.text for m in bot_api.messages] == rest
        blocked = (await outbox_rows(db_path))[0]
        assert blocked["failed_at"] is not None and blocked["sent_at"] is None
        assert "Forbidden" in str(blocked["last_error"])
        failed = [e for e in logs if e["event"] == "alert.failed"]
        assert [(e["message_id"], e["chat_id"], e["kind"], e["attempts"]) for e in failed] == [
            (blocked["id"], 3, "LIQUIDATABLE", 1)
        ]
        assert failed[0]["position"] == blocked["position"] and failed[0]["block"] == blocked["block"]

    async def test_5xx_backs_off_then_delivers_once(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """A server error pauses all sending for the backoff, then the message goes exactly once."""
        bot_api.fail_next(1, status=502)
        text = await queue(store, AlertKind.LIQUIDATABLE, 1)
        assert await Sender(store, transport, backoff_base=0.3).drain(soon()) == 0
        failed, delivered = bot_api.requests
        assert (failed.status, delivered.status) == (502, 200)
        assert delivered.received_at - failed.received_at >= 0.29
        assert [m.text for m in bot_api.messages] == [text]
        assert [(r["sent_at"] is not None, r["attempts"]) for r in await outbox_rows(db_path)] == [(True, 2)]

    async def test_group_upgraded_to_supergroup_is_followed(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """A chat that migrated to a supergroup still gets the alert, at its new id, and later ones too."""
        bot_api.migrate_chat(-100, -1001234)
        await queue(store, AlertKind.CRITICAL, -100)
        await queue(store, AlertKind.WARN, -100)
        assert await Sender(store, transport, per_chat_interval=0).drain(soon()) == 0
        assert [m.chat_id for m in bot_api.messages] == [-1001234, -1001234]

    async def test_no_chat_at_all_is_undeliverable(self, bot_api: BotApiServer) -> None:
        """Without a chat on the message or a default, there is nowhere to send: Undeliverable, not a crash."""
        async with TelegramTransport(TOKEN, bot_api.base_url, default_chat_id=None) as t:
            with pytest.raises(Undeliverable):
                await t.send(None, "nowhere")
        assert bot_api.requests == []

    async def test_server_down_defers_with_backoff(self, store: Store, db_path: Path) -> None:
        """Connection refused: the message stays pending, deferred by the backoff, and drain stops early."""
        await queue(store, AlertKind.CRITICAL, 1)
        async with TelegramTransport(TOKEN, f"http://127.0.0.1:{closed_port()}", None) as down:
            with structlog.testing.capture_logs() as logs:
                started = time.time()
                assert await Sender(store, down, backoff_base=30).drain(soon(5)) == 1
        [row] = await outbox_rows(db_path)
        assert row["sent_at"] is None and row["failed_at"] is None and row["attempts"] == 1
        assert float(row["next_attempt_at"]) >= started + 30
        assert [(e["event"], e["scope"]) for e in logs] == [("alert.deferred", "link")]


class TestLogs:
    async def test_one_info_line_per_commit_and_each_alert_at_debug(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """A burst logs `alerts.sent` at info per committed batch (counts adding up to the burst, the newest
        block, the requests' time), and each alert's `alert.sent` only at debug."""
        for chat in range(1, 21):
            await queue(store, AlertKind.WARN, chat)
        with structlog.testing.capture_logs() as logs:
            assert await Sender(store, transport, messages_per_second=1000, per_chat_interval=0).drain(soon()) == 0
        each = [e for e in logs if e["event"] == "alert.sent"]
        batches = [e for e in logs if e["event"] == "alerts.sent"]
        assert len(each) == 20 and {e["log_level"] for e in each} == {"debug"}
        assert {e["log_level"] for e in batches} == {"info"} and sum(e["count"] for e in batches) == 20
        assert max(e["block"] for e in batches) == max(e["block"] for e in each)
        assert all(0 < b["send_ms_max"] <= b["send_ms"] for b in batches)


class TestCrashes:
    @pytest.mark.parametrize("where", ["store.defer", "on_chat_gone"])
    async def test_an_unexpected_error_in_a_send_stops_the_sender_loudly(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, where: str
    ) -> None:
        """The store failing as a send is recorded, or the chat-gone hook failing: run() raises that error
        instead of carrying on with the chat held forever or the failure lost."""

        async def broken(*args: object) -> None:
            raise RuntimeError("disk gone")

        if where == "store.defer":
            bot_api.fail_next(1, status=429, retry_after=1)
            store.defer = broken  # type: ignore[method-assign]
        else:
            bot_api.block_chat(7)
        await queue(store, AlertKind.WARN, 7)
        sender = Sender(store, transport, on_chat_gone=broken)
        with pytest.raises(RuntimeError, match="disk gone"):
            async with asyncio.timeout(5):
                await sender.run()


class TestSecrets:
    async def test_token_never_in_logs(self, store: Store, transport: TelegramTransport,
                                       bot_api: BotApiServer) -> None:
        """Sent, deferred and failed events carry facts about the message, never the token."""
        bot_api.fail_next(1, status=429, retry_after=1)
        bot_api.block_chat(9)
        for chat in (7, 8, 9):
            await queue(store, AlertKind.WARN, chat)
        with structlog.testing.capture_logs() as logs:
            assert await Sender(store, transport).drain(soon()) == 0
        assert {e["event"] for e in logs} == {"alert.sent", "alerts.sent", "alert.deferred", "alert.failed"}
        assert_no_secret(repr(logs))

    async def test_token_not_in_network_error(self) -> None:
        """With the server down, the RetryLater (text, repr and traceback) does not carry the token."""
        async with TelegramTransport(TOKEN, f"http://127.0.0.1:{closed_port()}", None) as down:
            with pytest.raises(RetryLater) as caught:
                await down.send(1, "hello")
        assert caught.value.scope is Scope.LINK
        assert_no_secret(str(caught.value) + repr(caught.value) + "".join(traceback.format_exception(caught.value)))

    async def test_wrong_token_is_transport_broken_without_the_token(self, bot_api: BotApiServer) -> None:
        """A 401 stops the sender (no message can go) and names no token."""
        wrong = "987654321:BBH-another_secret-Token-fedcba9876543210"
        async with TelegramTransport(wrong, bot_api.base_url, None) as t:
            with pytest.raises(TransportBroken) as caught:
                await t.send(1, "hello")
        assert bot_api.requests[0].status == 401
        assert wrong not in str(caught.value) and wrong.partition(":")[2] not in str(caught.value)

    def test_malformed_token_is_refused_without_echoing_it(self) -> None:
        """aiogram's own token validation error is scrubbed too."""
        with pytest.raises(TransportBroken) as caught:
            TelegramTransport("not a token with spaces", "http://127.0.0.1:1", None)
        assert "not a token" not in str(caught.value)


class TestText:
    async def test_html_and_markdown_in_labels_arrive_literally(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """Plain text: a label with tags, entities and markdown is neither parsed nor rejected."""
        text = await queue(store, AlertKind.WARN, 1, "Vault <b>main</b> & <script>x</script> *hi* _it_ [a](http://x) `c` &amp;")
        assert await Sender(store, transport).drain(soon()) == 0
        assert [m.text for m in bot_api.messages] == [text]

    async def test_stdout_transport_prints_messages_with_a_separator(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a token, alerts are printed, one block per message."""
        async with StdoutTransport() as out:
            await out.send(None, "first <b>")
            await out.send(42, "second")
        assert capsys.readouterr().out == f"first <b>\n{StdoutTransport.SEPARATOR}\nsecond\n"

    async def test_stdout_transport_writes_to_a_given_stream(self) -> None:
        """The stream is injectable."""
        stream = io.StringIO()
        await StdoutTransport(stream).send(1, "alert")
        assert stream.getvalue() == "alert\n"


class TestWaking:
    async def test_wake_sends_a_new_message_at_once(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """An idle sender waits on its event; wake() after queueing sends within moments, then it is marked sent."""
        sender = Sender(store, transport)
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(sender.run())
            await until_idle(running)
            await queue(store, AlertKind.CRITICAL, 1)
            woken = time.monotonic()
            sender.wake()
            [message] = await bot_api.wait_for_messages(1, timeout=2)
            running.cancel()
        assert message.received_at - woken < 0.5
        [row] = await outbox_rows(db_path)
        assert row["sent_at"] is not None


class TestConcurrency:
    async def test_many_chats_are_sent_to_concurrently_each_in_order(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """With 100 ms per request, sends to different chats overlap (at most `concurrency`); one chat's go one by one."""
        bot_api.send_delay = 0.1
        queued = {chat: [await queue(store, AlertKind.WARN, chat) for _ in range(3)] for chat in range(1, 13)}
        sender = Sender(store, transport, messages_per_second=1000, per_chat_interval=0, concurrency=4)
        assert await sender.drain(soon(20)) == 0
        assert 1 < bot_api.peak_sends_in_flight <= 4
        assert bot_api.peak_sends_in_flight_per_chat == 1
        assert {chat: [m.text for m in bot_api.messages_to(chat)] for chat in queued} == queued

    async def test_a_burst_to_many_chats_is_picked_from_few_queries(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """200 chats with one alert each: the outbox is ranked a few times for the burst, not once per send (each
        ranking reads every pending row, so one per send made a burst quadratic); each alert still goes once."""
        queued = {chat: await queue(store, AlertKind.WARN, chat) for chat in range(1, 201)}
        queries = count_rankings(store)
        sender = Sender(store, transport, messages_per_second=10_000, per_chat_interval=0, concurrency=8)
        assert await sender.drain(soon(20)) == 0
        assert {m.chat_id: m.text for m in bot_api.messages} == queued and len(bot_api.messages) == 200
        assert len(queries) < 20, queries

    async def test_while_the_bot_wide_limit_holds_the_outbox_is_not_ranked_again(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """30 chats at 60 messages/s: the bucket holds back every send after the first, and every send ending
        wakes the sender, yet the burst still goes from one ranking (nothing could start meanwhile, whatever
        the outbox held: asking it again on every wake was a query per send)."""
        queued = {chat: await queue(store, AlertKind.WARN, chat) for chat in range(1, 31)}
        queries = count_rankings(store)
        sender = Sender(store, transport, messages_per_second=60, per_chat_interval=0, concurrency=8)
        assert await sender.drain(soon(20)) == 0
        assert {m.chat_id: m.text for m in bot_api.messages} == queued and len(bot_api.messages) == 30
        assert len(queries) <= 3, queries

    async def test_a_burst_is_marked_sent_in_few_transactions(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """60 chats, 8 sends at a time: answers arriving while others are still running share one commit per
        `commit_every` (a commit per answer was most of a burst's disk and CPU); all are marked sent, once."""
        bot_api.send_delay = 0.05
        queued = {chat: await queue(store, AlertKind.WARN, chat) for chat in range(1, 61)}
        commits: list[int] = []
        mark = store.mark_sent_many

        async def counted(sent):  # type: ignore[no-untyped-def]
            commits.append(len(sent))
            await mark(sent)

        store.mark_sent_many = counted  # type: ignore[method-assign]  # counts the real store's commits
        sender = Sender(store, transport, messages_per_second=1000, per_chat_interval=0, commit_every=1.0)
        assert await sender.drain(soon(20)) == 0
        assert {m.chat_id: m.text for m in bot_api.messages} == queued and len(bot_api.messages) == 60
        assert sum(commits) == 60 and len(commits) <= 3, commits
        assert all(r["sent_at"] is not None and r["attempts"] == 1 for r in await outbox_rows(db_path))

    async def test_a_lone_message_is_marked_sent_at_once(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """With no other send running no answer can join its commit: it does not wait out `commit_every`."""
        await queue(store, AlertKind.WARN, 7)
        sender = Sender(store, transport, commit_every=3600)
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(sender.run())
            async with asyncio.timeout(5):
                await sender.settled.wait()
            running.cancel()
        assert [r["sent_at"] is not None for r in await outbox_rows(db_path)] == [True]

    async def test_the_most_urgent_chats_go_first(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """The first sends in flight are to the chats with the most urgent messages, whatever the queue order."""
        bot_api.send_delay = 0.1
        kinds = [AlertKind.RECOVERED, AlertKind.WARN, AlertKind.LIQUIDATABLE, AlertKind.WARN, AlertKind.CRITICAL]
        for chat, kind in enumerate(kinds, start=1):
            await queue(store, kind, chat)
        sender = Sender(store, transport, messages_per_second=1000, per_chat_interval=0, concurrency=2)
        assert await sender.drain(soon(20)) == 0
        assert {m.chat_id for m in bot_api.messages[:2]} == {3, 5}
        assert bot_api.messages[-1].chat_id == 1

    async def test_a_throttled_or_blocked_chat_does_not_hold_back_the_others(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """Chat 1 is told to retry in 30 s and chat 2 blocked the bot: chats 3-10 all get theirs meanwhile."""
        bot_api.send_delay = 0.05
        bot_api.fail_next(1, status=429, retry_after=30)
        bot_api.block_chat(2)
        await queue(store, AlertKind.LIQUIDATABLE, 1)  # the most urgent: the first request, the one throttled
        await queue(store, AlertKind.CRITICAL, 2)
        rest = {chat: await queue(store, AlertKind.WARN, chat) for chat in range(3, 11)}
        sender = Sender(store, transport, messages_per_second=1000, per_chat_interval=0, concurrency=4)
        assert await sender.drain(soon(10)) == 1  # chat 1's, deferred past the deadline
        assert {m.chat_id: m.text for m in bot_api.messages} == rest
        rows = {r["chat_id"]: r for r in await outbox_rows(db_path)}
        assert rows[1]["sent_at"] is None and rows[1]["failed_at"] is None
        assert rows[2]["failed_at"] is not None

    async def test_cancelled_while_sends_are_in_flight_they_finish_and_are_marked_sent(
        self, store: Store, transport: TelegramTransport, bot_api: BotApiServer, db_path: Path
    ) -> None:
        """Cancelling run() with four sends in flight waits for their answers and records all four as sent."""
        bot_api.send_delay = 0.3
        for chat in range(1, 5):
            await queue(store, AlertKind.WARN, chat)
        sender = Sender(store, transport, messages_per_second=1000, per_chat_interval=0, concurrency=4)
        running = asyncio.create_task(sender.run())
        await bot_api.wait_until(lambda: bot_api.sends_in_flight == 4, "four sends in flight")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert bot_api.sends_in_flight == 0
        assert [r["sent_at"] is not None for r in await outbox_rows(db_path)] == [True] * 4
