"""The bot's side of `chainwatch run`: long-polls Telegram for updates and feeds them to an aiogram Dispatcher
with one Router per feature, wired here and nowhere else.

Polling is our own short loop around `getUpdates` rather than `Dispatcher.start_polling`, for one guarantee:
an update's offset is confirmed to Telegram only once its handler has finished, so an update that arrives as
chainwatch stops is handled after the restart instead of being lost. Updates of one batch run concurrently
across chats and in order within a chat.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.exceptions import ClientDecodeError, TelegramAPIError, TelegramRetryAfter, TelegramUnauthorizedError
from aiogram.types import BotCommand, CallbackQuery, Message, TelegramObject, Update

from chainwatch.bot import positions, settings, thresholds, watching
from chainwatch.bot.context import BotContext, EngineBusy
from chainwatch.bot.texts import COMMANDS

log = structlog.get_logger(__name__)

POLL_TIMEOUT = 25  # seconds Telegram holds a getUpdates open when nothing is pending
ALLOWED_UPDATES = ["message", "callback_query"]
FINISH_DEADLINE = 10.0  # at shutdown, what a batch may still take before its handlers are cancelled


def dispatcher(ctx: BotContext) -> Dispatcher:
    """One Router per feature, the fallbacks last so that they only see what no feature took."""
    dp = Dispatcher(ctx=ctx)
    dp.include_routers(settings.router(), watching.router(), thresholds.router(), positions.router(), settings.fallback())
    dp.update.outer_middleware(ChatGate(ctx))
    return dp


class ChatGate(BaseMiddleware):
    """Before any handler: the chat is known (and resumed if it had blocked the bot), within its command budget;
    after it: a handler's failure is told to the chat in one line and logged, and never stops the bot."""

    def __init__(self, ctx: BotContext) -> None:
        self._ctx = ctx

    async def __call__(
        self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]], event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:  # fmt: skip
        assert isinstance(event, Update)
        message = event.message or (event.callback_query.message if event.callback_query else None)
        if message is None or not isinstance(message, Message):
            if event.callback_query is not None:
                await _answer(event.callback_query, "This message is too old.")
            return None
        chat = message.chat
        ctx = self._ctx
        if await ctx.store.chats.touch_chat(chat.id, chat.type):
            log.info("bot.chat_resumed", chat_id=chat.id)
            try:
                await ctx.watches_changed()
            except EngineBusy:
                pass
        admitted, tell = ctx.limits.admit(chat.id)
        if not admitted:
            if event.callback_query is not None:
                await _answer(event.callback_query, "Slow down")
            if tell:
                await ctx.reply(chat.id, f"Slow down: at most {ctx.config.bot.commands_per_minute} commands a minute. "
                                         "The rest of this minute's are ignored.")  # fmt: skip
            return None
        try:
            return await handler(event, data)
        except Exception:
            log.exception("bot.handler_failed", chat_id=chat.id, update_id=event.update_id)
            if event.callback_query is not None:
                await _answer(event.callback_query, "Something went wrong.")
            await ctx.reply(chat.id, "Something went wrong with that command; it has been logged. Nothing you had "
                                     "set up was changed by the failure.")  # fmt: skip
            return None


async def _answer(query: CallbackQuery, text: str) -> None:
    try:
        await query.answer(text)
    except TelegramAPIError:
        pass  # a query too old to answer: nothing else to do with it


class BotService:
    """Runs until cancelled or `stop()`: registers the menu, then polls and dispatches."""

    def __init__(self, bot: Bot, ctx: BotContext, *, poll_timeout: int = POLL_TIMEOUT) -> None:
        self._bot = bot
        self._dp = dispatcher(ctx)
        self._poll_timeout = poll_timeout
        self._stopping = asyncio.Event()
        self._offset: int | None = None
        self._confirmed: int | None = None

    def stop(self) -> None:
        """Finish the batch in hand, confirm it, take no more."""
        self._stopping.set()

    async def run(self) -> None:
        await self._register_commands()
        failures = 0
        while not self._stopping.is_set():
            try:
                updates = await self._next_batch()
            except TelegramRetryAfter as error:
                await self._pause(error.retry_after)
                continue
            except TelegramUnauthorizedError:
                raise  # the token was revoked: no command can be answered until an operator fixes it
            except (TelegramAPIError, ClientDecodeError) as error:
                # Network trouble, a 5xx, a garbage body, another poller on the same token (409): back off, retry.
                failures += 1
                log.warning("bot.poll_failed", reason=type(error).__name__, attempt=failures)
                await self._pause(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            failures = 0
            if updates:
                await self._handle(updates)
                self._offset = updates[-1].update_id + 1
        await self._confirm()

    async def _next_batch(self) -> list[Update]:
        polling = asyncio.ensure_future(self._bot.get_updates(
            offset=self._offset, timeout=self._poll_timeout, allowed_updates=ALLOWED_UPDATES,
            request_timeout=self._poll_timeout + 10,
        ))  # fmt: skip
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not polling.done():
            # Stopping mid-poll: whatever Telegram would return stays unconfirmed and comes again after a restart.
            polling.cancel()
            return []
        self._confirmed = self._offset
        return polling.result()

    async def _handle(self, updates: list[Update]) -> None:
        by_chat: defaultdict[int | None, list[Update]] = defaultdict(list)
        for update in updates:
            by_chat[_chat_of(update)].append(update)

        async def in_order(batch: list[Update]) -> None:
            for update in batch:
                await self._feed(update)

        tasks = [asyncio.ensure_future(in_order(batch)) for batch in by_chat.values()]
        # Shielded: a stop while handling lets the batch finish (within a deadline) so it can be confirmed.
        try:
            await asyncio.shield(asyncio.gather(*tasks))
        except asyncio.CancelledError:
            done, pending = await asyncio.wait(tasks, timeout=FINISH_DEADLINE)
            for task in pending:
                task.cancel()
            raise

    async def _feed(self, update: Update) -> None:
        try:
            await self._dp.feed_update(self._bot, update)
        except Exception:  # ChatGate already turns handler failures into a reply; this is the dispatcher's own
            log.exception("bot.update_failed", update_id=update.update_id)

    async def _confirm(self) -> None:
        """Tells Telegram the last batch is handled (a getUpdates with the next offset), so it is not sent again."""
        if self._offset is None or self._offset == self._confirmed:
            return
        try:
            await self._bot.get_updates(offset=self._offset, timeout=0, limit=1, allowed_updates=ALLOWED_UPDATES)
        except TelegramAPIError as error:
            log.warning("bot.confirm_failed", reason=type(error).__name__)

    async def _register_commands(self) -> None:
        menu = [BotCommand(command=name, description=what[:256]) for name, _, what, _ in COMMANDS]
        try:
            await self._bot.set_my_commands(menu)
        except TelegramAPIError as error:  # the menu is a convenience: commands work without it
            log.warning("bot.menu_not_set", reason=type(error).__name__)

    async def _pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):  # not wait_for, which can swallow a cancellation on Python 3.11
                await self._stopping.wait()
        except TimeoutError:
            pass


def _chat_of(update: Update) -> int | None:
    if update.message is not None:
        return update.message.chat.id
    if update.callback_query is not None and update.callback_query.message is not None:
        return update.callback_query.message.chat.id
    return None
