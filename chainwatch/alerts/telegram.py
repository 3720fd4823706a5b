"""Transports the sender delivers through: the Telegram Bot API via aiogram, and stdout when no token is set.

Alert texts are sent as plain text (no parse mode), so a user's label full of `<b>` or `*` arrives as typed.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions

from chainwatch.alerts.sender import RetryLater, Scope, TransportBroken, Undeliverable
from chainwatch.store import Keyboard

log = structlog.get_logger(__name__)

# Telegram rejects longer texts outright; a cut alert beats a lost one.
MAX_TEXT = 4096
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class TelegramTransport:
    """Sends through one aiogram `Bot` at `api_base`; an async context manager that closes its HTTP session."""

    def __init__(self, token: str, api_base: str, default_chat_id: int | None, *, timeout: float = 15.0) -> None:
        self._secrets = _secrets_of(token)
        self._default_chat_id = default_chat_id
        # A group that became a supergroup has a new id; follow it for the rest of this run.
        self._migrated: dict[int, int] = {}
        try:
            session = AiohttpSession(api=TelegramAPIServer.from_base(api_base), timeout=timeout)
            self._bot = Bot(token, session=session)
        except Exception as e:  # aiogram's token validation; its text must not echo the token either
            raise TransportBroken(self._scrub(f"{type(e).__name__}: {e}")) from None

    async def __aenter__(self) -> TelegramTransport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._bot.session.close()

    @property
    def bot(self) -> Bot:
        """The aiogram Bot, shared with the command poller: one HTTP session, one token."""
        return self._bot

    async def send(self, chat_id: int | None, text: str, buttons: Keyboard = ()) -> None:
        chat = self._default_chat_id if chat_id is None else chat_id
        if chat is None:
            raise Undeliverable("no chat_id on the message and no default chat configured")
        chat = self._migrated.get(chat, chat)
        markup = inline_keyboard(buttons)
        try:
            try:
                await self._bot.send_message(chat, _fit(text), link_preview_options=_NO_PREVIEW, reply_markup=markup)
            except TelegramMigrateToChat as e:
                self._migrated[chat] = e.migrate_to_chat_id
                log.warning("telegram.chat_migrated", chat_id=chat, new_chat_id=e.migrate_to_chat_id)
                await self._bot.send_message(e.migrate_to_chat_id, _fit(text), link_preview_options=_NO_PREVIEW,
                                             reply_markup=markup)  # fmt: skip
        except TelegramForbiddenError as e:
            # Blocked by the user, kicked from the group: nothing reaches this chat until it writes again.
            raise Undeliverable(self._scrub(f"{type(e).__name__}: {e.message}"), chat_gone=True) from None
        except TelegramAPIError as e:
            raise self._translated(e, chat_scoped=True) from None
        except ClientDecodeError as e:  # a proxy's HTML error page, a truncated body
            raise RetryLater(0.0, self._scrub(f"undecodable response: {e.message}"), scope=Scope.LINK) from None

    async def username(self) -> str:
        """The bot's @username from getMe: a startup check that the token and API base work."""
        try:
            me = await self._bot.get_me()
        except TelegramAPIError as e:
            raise self._translated(e, chat_scoped=False) from None
        except ClientDecodeError as e:
            raise RetryLater(0.0, self._scrub(f"undecodable response: {e.message}"), scope=Scope.LINK) from None
        return me.username or str(me.id)

    def _translated(self, error: TelegramAPIError, *, chat_scoped: bool) -> Exception:
        reason = self._scrub(f"{type(error).__name__}: {error.message}")
        match error:
            case TelegramRetryAfter():
                return RetryLater(float(error.retry_after), reason, scope=Scope.CHAT if chat_scoped else Scope.BOT)
            case TelegramEntityTooLarge():  # a subclass of TelegramNetworkError, but retrying cannot help
                return Undeliverable(reason)
            case TelegramNetworkError() | TelegramServerError():
                return RetryLater(0.0, reason, scope=Scope.LINK)
            case TelegramUnauthorizedError() | TelegramNotFound():
                # 401: the token is wrong or revoked; 404: the API base is wrong. No message can go.
                return TransportBroken(reason)
            case TelegramForbiddenError() | TelegramBadRequest() | TelegramMigrateToChat():
                return Undeliverable(reason)
            case _:  # an error code the Bot API does not document for sendMessage
                return RetryLater(0.0, reason, scope=Scope.LINK)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<token>")
        return text


class StdoutTransport:
    """Prints each alert, with a separator line between messages: the transport when no bot token is configured."""

    SEPARATOR = "-" * 40

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = sys.stdout if stream is None else stream
        self._count = 0

    async def __aenter__(self) -> StdoutTransport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stream.flush()

    async def send(self, chat_id: int | None, text: str, buttons: Keyboard = ()) -> None:
        if buttons:
            text = text + "\n" + "  ".join(f"[{b.text}]" for row in buttons for b in row)
        if self._count:
            self._stream.write(self.SEPARATOR + "\n")
        self._stream.write(text if text.endswith("\n") else text + "\n")
        self._stream.flush()
        self._count += 1


def _secrets_of(token: str) -> list[str]:
    # The whole token, as a URL may spell it (':' as %3A), and its secret half alone when long enough to be
    # unmistakable (real ones are 35 characters; scrubbing a two-letter one would mangle every message).
    secret = token.partition(":")[2]
    forms = {token, token.replace(":", "%3A"), token.replace(":", "%3a")} | ({secret} if len(secret) >= 8 else set())
    return sorted((f for f in forms if f), key=len, reverse=True)


def inline_keyboard(buttons: Keyboard) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    rows = [[InlineKeyboardButton(text=b.text, callback_data=b.data) for b in row] for row in buttons]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _fit(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
