"""The Telegram transport over HTTP to the fake Bot API server: what arrives, and what each failure becomes."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from chainwatch.alerts.sender import RetryLater, Scope, TransportBroken, Undeliverable
from chainwatch.alerts.telegram import MAX_TEXT, TelegramTransport
from chainwatch.devnet.botapi_wire import json_param
from chainwatch.store import Button
from tests.support.botapi import BotApiServer, running_bot_api

TOKEN = "123456789:AAH-test_secret-Token-0123456789abcdef"
SECRET = TOKEN.partition(":")[2]
CHAT = 42

HTML_PAGE = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApiServer]:
    async with running_bot_api(TOKEN) as server:
        yield server


@pytest.fixture
async def transport(bot_api: BotApiServer) -> AsyncIterator[TelegramTransport]:
    async with TelegramTransport(TOKEN, bot_api.base_url, None) as t:
        yield t


def outcome(error: BaseException) -> tuple[Any, ...]:
    """Everything the sender reads off an error: its type and, by type, its scope, wait, chat_gone and reason."""
    match error:
        case RetryLater():
            return ("RetryLater", error.scope, error.after, error.reason)
        case Undeliverable():
            return ("Undeliverable", error.chat_gone, error.reason)
        case TransportBroken():
            return ("TransportBroken", error.reason)
    raise AssertionError(f"not a transport error: {error!r}")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and SECRET not in text, text


# Each fault as the fake server plays it, and what the sender is told. These are the outcomes of aiogram's
# `Bot.send_message` as the transport translated it before sendMessage had a path of its own: the texts too,
# since they are stored as the message's last error.
FAULTS: list[tuple[str, Callable[[BotApiServer], None], tuple[Any, ...]]] = [
    ("429 with retry_after", lambda s: s.fail_next(1, status=429, retry_after=3),
     ("RetryLater", Scope.CHAT, 3.0, "TelegramRetryAfter: Flood control exceeded on method 'SendMessage' in chat 42. "
      "Retry in 3 seconds.\nOriginal description: Too Many Requests: retry after 3")),
    ("403 blocked", lambda s: s.block_chat(CHAT),
     ("Undeliverable", True, "TelegramForbiddenError: Forbidden: bot was blocked by the user")),
    ("400 chat not found", lambda s: s.fail_next(1, status=400, description="Bad Request: chat not found"),
     ("Undeliverable", False, "TelegramBadRequest: Bad Request: chat not found")),
    ("404 wrong API base", lambda s: s.fail_next(1, status=404, description="Not Found"),
     ("TransportBroken", "TelegramNotFound: Not Found")),
    ("409", lambda s: s.fail_next(1, status=409, description="Conflict"),
     ("RetryLater", Scope.LINK, 0.0, "TelegramConflictError: Conflict")),
    ("413", lambda s: s.fail_next(1, status=413, description="Request Entity Too Large"),
     ("Undeliverable", False, "TelegramEntityTooLarge: Request Entity Too Large")),
    ("500", lambda s: s.fail_next(1, status=500),
     ("RetryLater", Scope.LINK, 0.0, "TelegramServerError: Internal Server Error")),
    ("502 restarting", lambda s: s.fail_next(1, status=502, description="Bad Gateway: restart"),
     ("RetryLater", Scope.LINK, 0.0, "RestartingTelegram: Bad Gateway: restart")),
    ("418, undocumented", lambda s: s.fail_next(1, status=418, description="I'm a teapot"),
     ("RetryLater", Scope.LINK, 0.0, "TelegramAPIError: I'm a teapot")),
    ("502 HTML page", lambda s: s.fail_next(1, status=502, raw=HTML_PAGE),
     ("RetryLater", Scope.LINK, 0.0, "undecodable response: Failed to decode object")),
    ("200 HTML page", lambda s: s.fail_next(1, status=200, raw=HTML_PAGE),
     ("RetryLater", Scope.LINK, 0.0, "undecodable response: Failed to decode object")),
    ("200 truncated JSON", lambda s: s.fail_next(1, status=200, raw='{"ok": true, "resu'),
     ("RetryLater", Scope.LINK, 0.0, "undecodable response: Failed to decode object")),
    ("500 JSON but no answer", lambda s: s.fail_next(1, status=500, raw="[1, 2]"),
     ("RetryLater", Scope.LINK, 0.0, "undecodable response: Failed to deserialize object")),
    ("200 not ok", lambda s: s.fail_next(1, status=200, raw='{"ok": false, "description": "odd"}'),
     ("RetryLater", Scope.LINK, 0.0, "TelegramAPIError: odd")),
    ("migrated twice", lambda s: (s.migrate_chat(CHAT, -100), s.migrate_chat(-100, -200)),
     ("Undeliverable", False, "TelegramMigrateToChat: The group has been migrated to a supergroup with id -200 "
      "from -100\nOriginal description: Bad Request: group chat was upgraded to a supergroup chat")),
]  # fmt: skip


class TestDelivery:
    async def test_text_buttons_and_no_preview_arrive_as_the_bot_api_reads_them(
        self, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """Plain text as typed, the inline keyboard, link previews off: one sendMessage with those fields."""
        buttons = ((Button(text="Mute 1h", data="mute:1"), Button(text="<b>", data="x")),)
        await transport.send(CHAT, "health 1.05 <b>*label*</b> & é", buttons)
        (request,) = bot_api.requests
        assert request.method == "sendMessage" and request.status == 200
        assert int(request.params["chat_id"]) == CHAT
        assert json_param(request.params, "link_preview_options") == {"is_disabled": True}
        (message,) = bot_api.messages
        assert (message.chat_id, message.text, message.parse_mode) == (CHAT, "health 1.05 <b>*label*</b> & é", None)
        assert message.buttons == [[("Mute 1h", "mute:1"), ("<b>", "x")]]

    async def test_no_buttons_means_no_reply_markup(self, transport: TelegramTransport, bot_api: BotApiServer) -> None:
        """A message without buttons sends no reply_markup field at all."""
        await transport.send(CHAT, "plain")
        assert "reply_markup" not in bot_api.requests[0].params and bot_api.messages[0].reply_markup is None

    async def test_a_text_too_long_is_cut_to_the_limit(self, transport: TelegramTransport, bot_api: BotApiServer) -> None:
        """Telegram refuses texts over 4096 characters: the alert arrives cut, ending in an ellipsis."""
        await transport.send(CHAT, "x" * (MAX_TEXT + 10))
        assert bot_api.messages[0].text == "x" * (MAX_TEXT - 1) + "…"

    async def test_a_migrated_group_is_followed_for_the_rest_of_the_run(
        self, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """A group upgraded to a supergroup: sent again to the new id, and later sends go there at once."""
        bot_api.migrate_chat(CHAT, -1001)
        with structlog.testing.capture_logs() as logs:
            await transport.send(CHAT, "first")
            await transport.send(CHAT, "second")
        assert [(m.chat_id, m.text) for m in bot_api.messages] == [(-1001, "first"), (-1001, "second")]
        assert [int(r.params["chat_id"]) for r in bot_api.requests] == [CHAT, -1001, -1001]
        assert [(e["event"], e["new_chat_id"]) for e in logs] == [("telegram.chat_migrated", -1001)]

    async def test_an_ok_answer_is_delivered_whatever_its_result(
        self, transport: TelegramTransport, bot_api: BotApiServer
    ) -> None:
        """Telegram took the message once it says ok: a result that is no Message is no reason to send it again."""
        bot_api.fail_next(1, status=200, raw='{"ok": true, "result": {"unexpected": [1]}}')
        await transport.send(CHAT, "accepted")  # returns: delivered
        assert bot_api.requests[0].status == 200


class TestFailures:
    @pytest.mark.parametrize(("fault", "expected"), [(f[1], f[2]) for f in FAULTS], ids=[f[0] for f in FAULTS])
    async def test_each_answer_maps_to_the_same_outcome(
        self, transport: TelegramTransport, bot_api: BotApiServer, fault: Callable[[BotApiServer], None],
        expected: tuple[Any, ...],
    ) -> None:
        """Every failure the Bot API (or a proxy before it) can answer becomes the error it always became."""
        fault(bot_api)
        with pytest.raises((RetryLater, Undeliverable, TransportBroken)) as caught:
            await transport.send(CHAT, "an alert")
        assert outcome(caught.value) == expected
        assert not bot_api.messages

    async def test_wrong_token_is_transport_broken(self, bot_api: BotApiServer) -> None:
        """401: the token is wrong or revoked, no message can go."""
        async with TelegramTransport("987654:" + SECRET[::-1], bot_api.base_url, None) as t:
            with pytest.raises(TransportBroken) as caught:
                await t.send(CHAT, "x")
        assert outcome(caught.value) == ("TransportBroken", "TelegramUnauthorizedError: Unauthorized")

    async def test_a_request_that_times_out_is_retried_later(self, bot_api: BotApiServer) -> None:
        """No answer within the timeout: the link's trouble, tried again later."""
        bot_api.send_delay = 0.5
        async with TelegramTransport(TOKEN, bot_api.base_url, None, timeout=0.05) as t:
            with pytest.raises(RetryLater) as caught:
                await t.send(CHAT, "slow")
        assert outcome(caught.value) == ("RetryLater", Scope.LINK, 0.0, "TelegramNetworkError: Request timeout error")


class TestSecrets:
    @pytest.mark.parametrize("fault", [f[1] for f in FAULTS], ids=[f[0] for f in FAULTS])
    async def test_no_failure_carries_the_token(
        self, transport: TelegramTransport, bot_api: BotApiServer, fault: Callable[[BotApiServer], None]
    ) -> None:
        """Neither the error (text, repr, reason, traceback with its causes) nor a log line holds the token."""
        fault(bot_api)
        with structlog.testing.capture_logs() as logs:
            with pytest.raises((RetryLater, Undeliverable, TransportBroken)) as caught:
                await transport.send(CHAT, "an alert")
        error = caught.value
        chained = "".join(traceback.format_exception(error))
        assert_no_secret(str(error), repr(error), error.reason, chained, repr(logs))
        assert error.__cause__ is None and error.__suppress_context__

    async def test_a_broken_url_does_not_leak_the_token(self) -> None:
        """An API base that is no URL at all is refused up front, without the token the URL would hold."""
        with pytest.raises(TransportBroken) as caught:
            TelegramTransport(TOKEN, "http://[::1", None)
        assert "URL" in caught.value.reason
        assert_no_secret(str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value)))
