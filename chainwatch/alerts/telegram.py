"""Transports the sender delivers through: the Telegram Bot API via aiogram, and stdout when no token is set.

Alert texts are sent as plain text (no parse mode), so a user's label full of `<b>` or `*` arrives as typed.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import TextIO

import msgspec
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
from aiogram.methods import SendMessage
from aiohttp import ClientError, ClientTimeout
from yarl import URL

from chainwatch.alerts.sender import RetryLater, Scope, TransportBroken, Undeliverable
from chainwatch.store import Keyboard

log = structlog.get_logger(__name__)

# Telegram rejects longer texts outright; a cut alert beats a lost one.
MAX_TEXT = 4096
# The Bot API takes a JSON body as well as aiogram's urlencoded form: one msgspec call instead of quoting each field.
_JSON = {"Content-Type": "application/json"}


class _Button(msgspec.Struct, frozen=True):
    text: str
    callback_data: str


class _Markup(msgspec.Struct, frozen=True):
    inline_keyboard: tuple[tuple[_Button, ...], ...]


class _NoPreview(msgspec.Struct, frozen=True):
    is_disabled: bool


_NO_PREVIEW = _NoPreview(is_disabled=True)


class _SendMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """sendMessage's parameters, as aiogram's `Bot.send_message` sends them for an alert."""

    chat_id: int
    text: str
    link_preview_options: _NoPreview
    reply_markup: _Markup | None = None  # omitted when None, as aiogram omits it


_REQUEST = msgspec.json.Encoder()


class _Answer(msgspec.Struct, frozen=True):
    """What a sendMessage answer must say for the message to count as delivered; the rest is not read.

    Unknown fields are allowed: the answer's `result` is the whole Message, and Telegram adds fields."""

    ok: bool


_ANSWER = msgspec.json.Decoder(_Answer)


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
            # Holds the token, as aiogram's own requests do; never put in a log line or an error. Parsed once:
            # aiohttp parsing a str URL on every request was a third of its CPU per request.
            self._send_url = URL(session.api.api_url(token=self._bot.token, method="sendMessage"))
        except Exception as e:  # aiogram's token validation, an API base that is no URL: no echo of the token
            raise TransportBroken(self._scrub(f"{type(e).__name__}: {e}")) from None
        self._timeout = ClientTimeout(total=timeout)

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
        markup = _markup_of(buttons)
        try:
            try:
                await self._send_message(chat, _fit(text), markup)
            except TelegramMigrateToChat as e:
                self._migrated[chat] = e.migrate_to_chat_id
                log.warning("telegram.chat_migrated", chat_id=chat, new_chat_id=e.migrate_to_chat_id)
                await self._send_message(e.migrate_to_chat_id, _fit(text), markup)
        except TelegramForbiddenError as e:
            # Blocked by the user, kicked from the group: nothing reaches this chat until it writes again.
            raise Undeliverable(self._scrub(f"{type(e).__name__}: {e.message}"), chat_gone=True) from None
        except TelegramAPIError as e:
            raise self._translated(e, chat_scoped=True) from None
        except ClientDecodeError as e:  # a proxy's HTML error page, a truncated body
            raise RetryLater(0.0, self._scrub(f"undecodable response: {e.message}"), scope=Scope.LINK) from None

    async def _send_message(self, chat: int, text: str, markup: _Markup | None) -> None:
        """aiogram's `Bot.send_message` without its models on the way, raising aiogram's own errors.

        The same session, URL and parameters (as JSON); but a delivered message's answer is only checked for `ok`
        instead of validated into a Message (pydantic, most of a send's CPU, for a result nobody reads).
        Anything else goes to aiogram's own `check_response`, so every failure is classified exactly as
        `send_message` classifies it."""
        body = _REQUEST.encode(_SendMessage(chat_id=chat, text=text, link_preview_options=_NO_PREVIEW, reply_markup=markup))
        session = await self._bot.session.create_session()
        try:
            async with session.post(self._send_url, data=body, headers=_JSON, timeout=self._timeout) as r:
                status, content = r.status, await r.read()
        except asyncio.TimeoutError:  # the same errors, with the same texts, as aiogram's make_request
            raise TelegramNetworkError(method=_method(chat, text), message="Request timeout error") from None
        except ClientError as e:
            raise TelegramNetworkError(method=_method(chat, text), message=f"{type(e).__name__}: {e}") from None
        if 200 <= status <= 226 and _says_ok(content):
            return
        # Raises for anything but a success (which a lenient reading of an odd answer may still be).
        self._bot.session.check_response(self._bot, _method(chat, text), status, content.decode(errors="replace"))

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


def _says_ok(content: bytes) -> bool:
    try:
        return _ANSWER.decode(content).ok
    except msgspec.DecodeError:  # not JSON, or not an answer: check_response says which, as it always has
        return False


def _method(chat: int, text: str) -> SendMessage:
    # What aiogram's errors are built from (their texts name the method and the chat); made only on a failure.
    return SendMessage(chat_id=chat, text=text)


def _markup_of(buttons: Keyboard) -> _Markup | None:
    """The InlineKeyboardMarkup of `buttons`; None without buttons (no reply_markup at all)."""
    if not buttons:
        return None
    return _Markup(tuple(tuple(_Button(b.text, b.data) for b in row) for row in buttons))


def _fit(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
