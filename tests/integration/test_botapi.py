"""The fake Bot API server against a real aiogram 3 Bot and Dispatcher over HTTP: nothing of aiogram is mocked."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from chainwatch.devnet.botapi import BotApiServer, running_bot_api

TOKEN = "424242:AAF-botapi-test-token"
USER = 77
GROUP = -1001500


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    async with running_bot_api(TOKEN) as server:
        yield server
        assert server.server_errors == []


@pytest.fixture
async def bot(bot_api: BotApiServer) -> AsyncIterator[Bot]:
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(bot_api.base_url)))
    yield bot
    await bot.session.close()


@asynccontextmanager
async def polling(bot: Bot, bot_api: BotApiServer, *routers: Router) -> AsyncIterator[Dispatcher]:
    """Runs a Dispatcher with `routers` until the block ends; yields once it is long-polling.

    Updates are handled one at a time, so aiogram confirms an update (next getUpdates offset) only after
    its handler returned.
    """
    dp = Dispatcher()
    dp.include_routers(*routers)
    task = asyncio.create_task(dp.start_polling(
        bot, handle_signals=False, handle_as_tasks=False, close_bot_session=False, polling_timeout=30,
    ))
    try:
        await bot_api.wait_for_poll()
        yield dp
    finally:
        if not task.done():
            await dp.stop_polling()
        await task


def ping_router() -> Router:
    router = Router()

    @router.message(Command("ping"))
    async def ping(message: Message) -> None:
        await message.answer("pong")

    return router


class TestCommands:
    async def test_ping_gets_pong(self, bot: Bot, bot_api: BotApiServer) -> None:
        """/ping in a private chat reaches the Command handler and its reply is recorded, without parse_mode."""
        async with polling(bot, bot_api, ping_router()):
            update_id = bot_api.send_text(USER, "/ping")
            reply = await bot_api.wait_for_message(USER, lambda m: m.text == "pong")
            await bot_api.wait_for_update_confirmed(update_id)
        assert reply.parse_mode is None and reply.buttons == []
        assert [m.text for m in bot_api.messages_to(USER)] == ["pong"]

    async def test_command_for_another_bot_is_ignored(self, bot: Bot, bot_api: BotApiServer) -> None:
        """In a group, /ping@other_bot is not ours; /ping@<our username> is."""
        async with polling(bot, bot_api, ping_router()):
            other = bot_api.send_text(GROUP, "/ping@other_bot", user_id=USER)
            ours = bot_api.send_text(GROUP, "/ping@chainwatch_test_bot now", user_id=USER)
            await bot_api.wait_for_message(GROUP, lambda m: m.text == "pong")
            await bot_api.wait_for_update_confirmed(ours)
        assert bot_api.is_confirmed(other)
        assert [m.text for m in bot_api.messages_to(GROUP)] == ["pong"]

    async def test_injected_command_is_shaped_as_telegram_sends_it(self, bot: Bot, bot_api: BotApiServer) -> None:
        """A group /command carries a bot_command entity over the command and mention, and the sender and chat."""
        bot_api.send_text(GROUP, "/status@chainwatch_test_bot all", user_id=USER, username="alice")
        bot_api.send_text(USER, "plain words", first_name="Alice")
        command, plain = (u.message for u in await bot.get_updates())
        assert command is not None and plain is not None
        assert [(e.type, e.offset, e.length) for e in command.entities or []] == [("bot_command", 0, 27)]
        assert command.from_user is not None and plain.from_user is not None
        assert (command.chat.type, command.from_user.id, command.from_user.username) == ("supergroup", USER, "alice")
        assert plain.entities is None and (plain.chat.type, plain.from_user.id) == ("private", USER)
        assert (plain.chat.first_name, plain.chat.username) == ("Alice", "alice")  # the private chat is its user
        assert plain.message_id > command.message_id

    async def test_set_my_commands_is_recorded_per_scope(self, bot: Bot, bot_api: BotApiServer) -> None:
        """setMyCommands keeps the list per scope; getMyCommands reads it back; deleteMyCommands clears it."""
        await bot.set_my_commands([BotCommand(command="ping", description="Is it alive"),
                                   BotCommand(command="status", description="Positions watched")])
        await bot.set_my_commands([BotCommand(command="mute", description="Quiet here")],
                                  scope=BotCommandScopeChat(chat_id=GROUP))
        assert bot_api.commands == [("ping", "Is it alive"), ("status", "Positions watched")]
        assert bot_api.command_sets[(f"chat:{GROUP}", "")] == [("mute", "Quiet here")]
        assert [c.command for c in await bot.get_my_commands()] == ["ping", "status"]
        assert await bot.delete_my_commands() is True
        assert bot_api.commands == []

    async def test_invalid_command_name_is_refused(self, bot: Bot, bot_api: BotApiServer) -> None:
        """A command Telegram would refuse (upper case) is a 400, not recorded."""
        with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
            await bot.set_my_commands([BotCommand(command="Ping", description="x")])
        assert bot_api.commands == []


def menu_router() -> Router:
    router = Router()

    @router.message(Command("menu"))
    async def menu(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text="Mute 1 h", callback_data="mute:3600"),
            InlineKeyboardButton(text="Docs", url="https://example.org"),
        ]])
        await message.answer("Alerts are on", reply_markup=keyboard)

    @router.callback_query(F.data.startswith("mute:"))
    async def mute(callback: CallbackQuery) -> None:
        assert isinstance(callback.message, Message)
        await callback.answer("Muted")
        await callback.message.edit_text(f"Muted for {callback.data.split(':')[1]} s")  # type: ignore[union-attr]

    return router


class TestButtons:
    async def test_button_press_is_answered_and_edits_the_message(self, bot: Bot, bot_api: BotApiServer) -> None:
        """A press reaches the callback handler with the recorded message; the answer and the edit are recorded."""
        async with polling(bot, bot_api, menu_router()):
            bot_api.send_text(USER, "/menu")
            menu = await bot_api.wait_for_message(USER)
            assert menu.buttons == [[("Mute 1 h", "mute:3600"), ("Docs", None)]]
            bot_api.press_button(USER, menu.message_id, "mute:3600")
            answer = await bot_api.wait_for_callback_answer()
            edited = await bot_api.wait_for_message(USER, lambda m: m.edited_at is not None)
        assert "callback_query" in (bot_api.allowed_updates or [])
        assert (answer.text, answer.show_alert) == ("Muted", False)
        assert (edited.message_id, edited.text) == (menu.message_id, "Muted for 3600 s")
        assert edited.history == ("Alerts are on",)
        assert edited.buttons == []  # an edit without reply_markup drops the keyboard, as on Telegram

    async def test_second_answer_to_a_query_is_too_old(self, bot: Bot, bot_api: BotApiServer) -> None:
        """answerCallbackQuery works once per query; again, or with an unknown id, it is Telegram's 400."""
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Ok", callback_data="ok")]])
        sent = await bot.send_message(USER, "Confirm?", reply_markup=keyboard)
        bot_api.press_button(USER, sent.message_id, "ok")
        (update,) = await bot.get_updates()
        assert update.callback_query is not None and update.callback_query.data == "ok"
        assert update.callback_query.message.text == "Confirm?"  # type: ignore[union-attr]
        assert await bot.answer_callback_query(update.callback_query.id) is True
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query(update.callback_query.id)
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query("no-such-query")
        assert [a.callback_query_id for a in bot_api.callback_answers] == [update.callback_query.id]

    async def test_pressing_a_button_that_is_not_there_is_a_test_bug(self, bot: Bot, bot_api: BotApiServer) -> None:
        """press_button refuses data no button of that message carries, and messages the bot never sent."""
        sent = await bot.send_message(USER, "No buttons")
        with pytest.raises(ValueError, match="no button"):
            bot_api.press_button(USER, sent.message_id, "anything")
        with pytest.raises(LookupError):
            bot_api.press_button(USER, sent.message_id + 100, "anything")
        assert bot_api.updates == []

    async def test_oversized_callback_data_is_refused(self, bot: Bot, bot_api: BotApiServer) -> None:
        """callback_data over 64 bytes is Telegram's BUTTON_DATA_INVALID, and nothing is recorded."""
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="d" * 65)]])
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(USER, "Too much", reply_markup=keyboard)
        assert bot_api.messages == []


class TestEdits:
    async def test_edit_keeps_history_and_new_buttons(self, bot: Bot, bot_api: BotApiServer) -> None:
        """editMessageText replaces text and keyboard in place, returning the edited Message."""
        sent = await bot.send_message(USER, "v1")
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Undo", callback_data="undo")]])
        edited = await bot.edit_message_text(text="v2", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard)
        await bot.edit_message_text(text="v3", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard)
        assert isinstance(edited, Message) and edited.text == "v2" and edited.edit_date is not None
        (record,) = bot_api.messages
        assert (record.text, record.history, record.buttons) == ("v3", ("v1", "v2"), [[("Undo", "undo")]])

    async def test_unchanged_or_missing_message_is_refused(self, bot: Bot, bot_api: BotApiServer) -> None:
        """An edit that changes nothing, or of a message that is not there, is Telegram's 400."""
        sent = await bot.send_message(USER, "same")
        with pytest.raises(TelegramBadRequest, match="message is not modified"):
            await bot.edit_message_text(text="same", chat_id=USER, message_id=sent.message_id)
        with pytest.raises(TelegramBadRequest, match="message to edit not found"):
            await bot.edit_message_text(text="other", chat_id=USER + 1, message_id=sent.message_id)
        assert bot_api.messages[0].history == ()


class TestChatMembers:
    async def test_admins_and_members_decode_as_aiogram_types(self, bot: Bot, bot_api: BotApiServer) -> None:
        """set_admins: first is the creator, the rest administrators, others members; private: the user owns it."""
        bot_api.set_admins(GROUP, [1, 2])
        assert isinstance(await bot.get_chat_member(GROUP, 1), ChatMemberOwner)
        admin = await bot.get_chat_member(GROUP, 2)
        assert isinstance(admin, ChatMemberAdministrator) and admin.can_restrict_members
        assert isinstance(await bot.get_chat_member(GROUP, 3), ChatMemberMember)
        assert isinstance(await bot.get_chat_member(USER, USER), ChatMemberOwner)

    async def test_admin_only_command_in_a_group(self, bot: Bot, bot_api: BotApiServer) -> None:
        """A handler checking getChatMember lets the admin through and refuses a member."""
        router = Router()

        @router.message(Command("mute"))
        async def mute(message: Message, bot: Bot) -> None:
            assert message.from_user is not None
            member = await bot.get_chat_member(message.chat.id, message.from_user.id)
            allowed = member.status in ("creator", "administrator")
            await message.answer(f"muted by {message.from_user.username}" if allowed else "admins only")

        bot_api.set_admins(GROUP, [1, 2])
        async with polling(bot, bot_api, router):
            bot_api.send_text(GROUP, "/mute", user_id=3, username="plain")
            await bot_api.wait_for_message(GROUP)
            bot_api.send_text(GROUP, "/mute", user_id=2, username="boss")
            await bot_api.wait_for_messages(2)
        assert [m.text for m in bot_api.messages_to(GROUP)] == ["admins only", "muted by boss"]

    async def test_get_chat_knows_injected_groups(self, bot: Bot, bot_api: BotApiServer) -> None:
        """getChat answers a ChatFullInfo aiogram decodes, with the type the test gave the chat."""
        bot_api.send_text(-4000, "hello", user_id=USER, chat_type="group")
        chat = await bot.get_chat(-4000)
        assert (chat.id, chat.type, chat.title) == (-4000, "group", "Test group -4000")


class TestLongPolling:
    async def test_held_poll_returns_as_soon_as_an_update_arrives(self, bot: Bot, bot_api: BotApiServer) -> None:
        """A getUpdates held open for 30 s answers right after send_text, with that update."""
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await bot_api.wait_for_poll()
        injected_at = time.monotonic()
        update_id = bot_api.send_text(USER, "hi")
        updates = await asyncio.wait_for(poll, 5)
        assert time.monotonic() - injected_at < 1.0
        assert [(u.update_id, u.message.text) for u in updates] == [(update_id, "hi")]  # type: ignore[union-attr]

    async def test_poll_with_nothing_pending_returns_empty_after_its_timeout(
        self, bot: Bot, bot_api: BotApiServer
    ) -> None:
        """With nothing to deliver, getUpdates waits out its timeout, then answers []."""
        started = time.monotonic()
        assert await bot.get_updates(timeout=1) == []
        assert time.monotonic() - started >= 0.9
        assert bot_api.polls_waiting == 0

    async def test_offset_confirms_only_updates_below_it(self, bot: Bot, bot_api: BotApiServer) -> None:
        """Updates stay pending until an offset above their id; limit caps a batch; ids count from 1."""
        ids = [bot_api.send_text(USER, f"m{i}") for i in range(3)]
        assert ids == [1, 2, 3]
        assert [u.update_id for u in await bot.get_updates()] == ids
        assert [u.update_id for u in await bot.get_updates()] == ids  # not confirmed by being read
        assert [u.update_id for u in await bot.get_updates(offset=3, limit=1)] == [3]
        assert bot_api.confirmed_offset == 3
        assert (bot_api.is_confirmed(2), bot_api.is_confirmed(3)) == (True, False)
        assert [u.update_id for u in bot_api.pending_updates] == [3]

    async def test_dispatcher_confirms_an_update_only_after_handling_it(self, bot: Bot, bot_api: BotApiServer) -> None:
        """While a handler runs its update stays unconfirmed; once it returns, the next poll confirms it."""
        entered, release = asyncio.Event(), asyncio.Event()
        router = Router()

        @router.message(Command("slow"))
        async def slow(message: Message) -> None:
            entered.set()
            await release.wait()
            await message.answer("done")

        async with polling(bot, bot_api, router):
            update_id = bot_api.send_text(USER, "/slow")
            await asyncio.wait_for(entered.wait(), 5)
            assert not bot_api.is_confirmed(update_id)
            release.set()
            await bot_api.wait_for_update_confirmed(update_id)
            assert [m.text for m in bot_api.messages] == ["done"]

    async def test_newer_poll_ends_the_held_one_with_conflict(self, bot: Bot, bot_api: BotApiServer) -> None:
        """Two getUpdates at once: the older ends with 409, as when two bot instances run."""
        older = asyncio.create_task(bot.get_updates(timeout=30))
        await bot_api.wait_for_poll()
        newer = asyncio.create_task(bot.get_updates(timeout=30))
        with pytest.raises(TelegramConflictError):
            await asyncio.wait_for(older, 5)
        bot_api.send_text(USER, "still here")
        assert [u.message.text for u in await asyncio.wait_for(newer, 5)] == ["still here"]  # type: ignore[union-attr]


    async def test_stopping_the_server_releases_a_held_poll(self) -> None:
        """Leaving running_bot_api answers a held getUpdates with [] at once instead of waiting out its timeout."""
        async with running_bot_api(TOKEN) as server:
            bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(server.base_url)))
            poll = asyncio.create_task(bot.get_updates(timeout=30))
            await server.wait_for_poll()
            stopping = time.monotonic()
        try:
            assert await asyncio.wait_for(poll, 5) == []
            assert time.monotonic() - stopping < 2.0
        finally:
            await bot.session.close()


class TestRobustness:
    async def test_malformed_params_are_telegram_shaped_400s(self, bot_api: BotApiServer) -> None:
        """Bad integers, broken JSON fields and bodies get ok=false with error_code 400, never a 500."""
        url = f"{bot_api.base_url}/bot{TOKEN}"
        cases = [
            ("getUpdates", {"data": {"offset": "soon"}}),
            ("sendMessage", {"data": {"chat_id": "1", "text": "hi", "reply_markup": "{not json"}}),
            ("setMyCommands", {"data": {"commands": '{"command": "x"}'}}),
            ("getChatMember", {"data": {"chat_id": "1"}}),
            ("editMessageText", {"data": {"chat_id": "1", "message_id": "one", "text": "x"}}),
            ("sendMessage", {"data": b"{", "headers": {"Content-Type": "application/json"}}),
        ]
        async with aiohttp.ClientSession() as session:
            for method, kwargs in cases:
                async with session.post(f"{url}/{method}", **kwargs) as response:
                    body = json.loads(await response.text())
                    assert (response.status, body["ok"], body["error_code"]) == (400, False, 400), (method, body)
                    assert body["description"].startswith("Bad Request"), body
        assert bot_api.messages == [] and bot_api.server_errors == []
        assert [r.status for r in bot_api.requests] == [400] * len(cases)
