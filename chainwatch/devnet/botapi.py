"""A local HTTP server speaking enough of the Telegram Bot API for tests and the demo, with fault injection (what it
records and how it reads parameters is in botapi_wire.py).

`async with running_bot_api(token) as server:` then point a bot at `server.base_url` (for aiogram:
`AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))`). It answers `POST /bot<token>/<method>`
with Bot API shaped JSON and records what it accepted, so a test can assert on what the bot said.

It is enough for a whole interactive bot: `getUpdates` long-polls like Telegram's, and the test plays the
user with `send_text` and `press_button`; the bot's replies, edits, button answers and registered commands
are recorded. Only the parts of the Bot API chainwatch uses are here; anything else is 404 as for a typo.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web

from chainwatch.devnet.botapi_wire import (
    BadRequest,
    COMMAND_RE,
    CallbackAnswer,
    ChatType,
    Fault,
    NOT_MODIFIED,
    Request,
    SentMessage,
    TOO_OLD,
    Update,
    bool_param,
    commands_key,
    default_chat_type,
    error,
    int_param,
    json_list_param,
    ok,
    params_of,
    reply_markup_of,
    text_param,
    utf16_len,
)

__all__ = [
    "BOT_USER", "BotApiServer", "CallbackAnswer", "ChatType", "Request", "SentMessage", "Update", "running_bot_api",
]

# The key of an answer that is a raw body instead of JSON (see `Fault.raw`); no Bot API answer has it.
_RAW = "__raw_body__"

BOT_USER = {"id": 0, "is_bot": True, "first_name": "chainwatch test", "username": "chainwatch_test_bot"}

@dataclass
class BotApiServer:
    token: str
    base_url: str = ""
    messages: list[SentMessage] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    # Every update with an id below this was confirmed by a getUpdates offset (Telegram then forgets it).
    confirmed_offset: int = 0
    callback_answers: list[CallbackAnswer] = field(default_factory=list)
    # setMyCommands lists by (scope, language_code); scope is "default", "all_group_chats", "chat:<id>", ...
    command_sets: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    allowed_updates: list[str] | None = None
    # Tracebacks of bugs in this server (answered as a JSON 500), so a test can assert there were none.
    server_errors: list[str] = field(default_factory=list)
    # Seconds each sendMessage takes to answer (the real Bot API takes 100-200 ms). The message is accepted
    # first and answered after: a client killed meanwhile has delivered a message it never heard about.
    send_delay: float = 0.0
    # sendMessage calls being answered now, and the most seen at once (overall and to any one chat).
    sends_in_flight: int = 0
    peak_sends_in_flight: int = 0
    peak_sends_in_flight_per_chat: int = 0
    _in_flight_per_chat: dict[Any, int] = field(default_factory=dict)
    _faults: deque[Fault] = field(default_factory=deque)
    _blocked: set[int] = field(default_factory=set)
    _migrated: dict[int, int] = field(default_factory=dict)
    _chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    _users: dict[int, dict[str, Any]] = field(default_factory=dict)
    _admins: dict[int, list[int]] = field(default_factory=dict)
    _open_queries: set[str] = field(default_factory=set)
    # Shared by user and bot messages, so ids are unique in every chat as Telegram's are.
    _message_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _update_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _query_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _polls_waiting: int = 0
    _poll_generation: int = 0
    _closed: bool = False
    # Replaced on every change: waiters hold the old one, which `_changed` sets. Sync, so injection is sync.
    _tick: asyncio.Event = field(default_factory=asyncio.Event)

    # -- faults -------------------------------------------------------------------------------------
    def fail_next(
        self, n: int = 1, status: int = 429, retry_after: int | None = 2, *, description: str | None = None,
        raw: str | None = None,
    ) -> None:
        """Answers the next `n` sendMessage calls with `status` (a 429 carries `retry_after` as Telegram does),
        with `description` if given, or with the body `raw` as it is instead of a JSON answer."""
        after = retry_after if status == 429 else None
        self._faults.extend(Fault(status, after, description, raw) for _ in range(n))

    def migrate_chat(self, old: int, new: int) -> None:
        """Answers sendMessage to `old` as Telegram does for a group upgraded to a supergroup with id `new`."""
        self._migrated[old] = new

    def block_chat(self, chat_id: int) -> None:
        """Answers sendMessage to `chat_id` with 403, as when the user blocked the bot."""
        self._blocked.add(chat_id)

    def set_admins(self, chat_id: int, user_ids: Sequence[int]) -> None:
        """getChatMember in `chat_id` answers "creator" for the first of `user_ids`, "administrator" for the rest."""
        self._admins[chat_id] = list(user_ids)

    # -- playing the user ---------------------------------------------------------------------------
    def send_text(
        self, chat_id: int, text: str, *, user_id: int | None = None, chat_type: ChatType | None = None,
        username: str | None = None, first_name: str | None = None,
    ) -> int:
        """Queues a `message` update as if user `user_id` wrote `text` in `chat_id`; returns its update_id.

        A text starting with "/" carries a bot_command entity, as Telegram adds one (aiogram routes on it).
        """
        chat, user = self._chat_and_user(chat_id, chat_type, user_id, username, first_name)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()), "chat": chat, "from": user, "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
        return self._inject("message", message)

    def press_button(
        self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None,
        chat_type: ChatType | None = None,
    ) -> int:
        """Queues a `callback_query` update as if the user pressed the button with `data` under the bot's message.

        Fails (as a test bug) unless the bot sent that message to that chat with such a button: a real client
        cannot press a button that is not there.
        """
        sent = self.message(chat_id, message_id)
        pressable = [d for row in sent.buttons for _, d in row if d is not None]
        if data not in pressable:
            raise ValueError(f"message {message_id} in chat {chat_id} has no button with data {data!r}: {sent.buttons}")
        _, user = self._chat_and_user(chat_id, chat_type, user_id, None, None)
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        query = {
            "id": query_id, "from": user, "chat_instance": f"instance-{chat_id}", "data": data,
            "message": self._message_json(sent),
        }
        return self._inject("callback_query", query)

    def _inject(self, kind: Literal["message", "callback_query"], payload: dict[str, Any]) -> int:
        update = Update(next(self._update_ids), kind, payload, time.monotonic())
        self.updates.append(update)
        self._changed()
        return update.update_id

    def _chat_and_user(
        self, chat_id: int, chat_type: ChatType | None, user_id: int | None, username: str | None,
        first_name: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The chat and sender objects of an injected update, remembered for later answers (getChat, replies)."""
        known = self._chats.get(chat_id)
        kind = chat_type or (known["type"] if known else default_chat_type(chat_id))
        if kind == "private":
            if chat_id <= 0 or (user_id is not None and user_id != chat_id):
                raise ValueError(f"a private chat's id is its user's id, positive: chat {chat_id}, user {user_id}")
            user_id = chat_id
        elif user_id is None:
            raise ValueError(f"say which user writes in {kind} {chat_id}: pass user_id")
        user = self._users.setdefault(
            user_id, {"id": user_id, "is_bot": False, "first_name": f"User {user_id}", "username": f"user{user_id}"}
        )
        if username is not None:
            user["username"] = username
        if first_name is not None:
            user["first_name"] = first_name
        if kind == "private":  # a private chat is named as its user is
            chat = {"id": chat_id, "type": kind, "first_name": user["first_name"], "username": user["username"]}
        else:
            chat = {"id": chat_id, "type": kind, "title": f"Test {kind} {chat_id}"}
        self._chats[chat_id] = chat
        # Copies: a later rename must not rewrite updates already queued.
        return dict(chat), dict(user)

    # -- reading what happened ----------------------------------------------------------------------
    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.messages if m.chat_id == chat_id]

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        """The bot's message `message_id` in `chat_id`, as last edited."""
        for m in self.messages:
            if m.chat_id == chat_id and m.message_id == message_id:
                return m
        raise LookupError(f"the bot sent no message {message_id} to chat {chat_id}")

    @property
    def commands(self) -> list[tuple[str, str]]:
        """(command, description) pairs setMyCommands registered for the default scope and all languages."""
        return self.command_sets.get(("default", ""), [])

    @property
    def pending_updates(self) -> list[Update]:
        """Injected updates not yet confirmed by a getUpdates offset."""
        return [u for u in self.updates if u.update_id >= self.confirmed_offset]

    def is_confirmed(self, update_id: int) -> bool:
        return update_id < self.confirmed_offset

    @property
    def polls_waiting(self) -> int:
        """How many getUpdates calls are held open right now waiting for an update."""
        return self._polls_waiting

    # -- waiting, each with a deadline and a report of what arrived ---------------------------------
    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SentMessage]:
        """Waits until at least `n` messages were accepted; fails listing what arrived if `timeout` passes."""
        await self.wait_until(lambda: len(self.messages) >= n, f"{n} messages", timeout)
        return list(self.messages)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Waits until at least `n` requests (accepted or refused) reached the server."""
        await self.wait_until(lambda: len(self.requests) >= n, f"{n} requests", timeout)
        return list(self.requests)

    async def wait_for_message(
        self, chat_id: int, predicate: Callable[[SentMessage], bool] | None = None, *, after: int = 0,
        timeout: float = 5.0,
    ) -> SentMessage:
        """The first message to `chat_id` among `messages[after:]` matching `predicate`, waiting for it.

        Pass `after=len(server.messages)` before acting to see only replies to that action. Edited messages
        are matched as they are now.
        """
        def found() -> SentMessage | None:
            for m in self.messages[after:]:
                if m.chat_id == chat_id and (predicate is None or predicate(m)):
                    return m
            return None

        await self.wait_until(lambda: found() is not None, f"a message to chat {chat_id} after #{after}", timeout)
        return found()  # type: ignore[return-value]

    async def wait_for_update_confirmed(self, update_id: int, timeout: float = 5.0) -> None:
        """Waits until a getUpdates offset confirmed update `update_id`: the bot moved past it."""
        await self.wait_until(lambda: self.is_confirmed(update_id), f"update {update_id} confirmed", timeout)

    async def wait_for_callback_answer(
        self, callback_query_id: str | None = None, timeout: float = 5.0
    ) -> CallbackAnswer:
        """The answer to `callback_query_id` (or the first answer at all), waiting for it."""
        def found() -> CallbackAnswer | None:
            return next((a for a in self.callback_answers
                         if callback_query_id is None or a.callback_query_id == callback_query_id), None)

        await self.wait_until(lambda: found() is not None, f"an answer to callback query {callback_query_id}", timeout)
        return found()  # type: ignore[return-value]

    async def wait_for_poll(self, timeout: float = 5.0) -> None:
        """Waits until a getUpdates call is held open with nothing to return: the bot is idle and listening."""
        await self.wait_until(lambda: self._polls_waiting > 0, "a getUpdates call waiting", timeout)

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        """Waits until `predicate()` holds, re-checked on every change; fails with a report after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if not await self._wait_changed(deadline - time.monotonic()):
                if predicate():
                    return
                raise AssertionError(f"waited {timeout} s for {what}; {self.report()}")

    def report(self) -> str:
        """What the server saw, for failure messages."""
        def lines(items: Sequence[object]) -> str:
            return "\n".join(f"  {i}" for i in items) or "  (none)"

        return (
            f"messages accepted:\n{lines(self.messages)}\n"
            f"requests:\n{lines([f'{r.method} -> {r.status}' for r in self.requests])}\n"
            f"updates (confirmed below {self.confirmed_offset}):\n"
            f"{lines([u.describe() for u in self.updates])}\n"
            f"callback answers:\n{lines(self.callback_answers)}\n"
            f"server errors:\n{lines(self.server_errors)}"
        )

    def _changed(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _wait_changed(self, seconds: float) -> bool:
        """Waits up to `seconds` for the next change; False if none came."""
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(self._tick.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _close(self) -> None:
        # Held-open polls would keep the runner's shutdown waiting; they answer [] at once instead.
        self._closed = True
        self._changed()

    # -- the HTTP side ------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        received_at = time.monotonic()
        method = request.match_info["method"]
        token_ok = request.match_info["token"] == self.token
        params: dict[str, Any] = {}
        try:
            params = await params_of(request)
            if method == "sendMessage":
                status, body = await self._timed_send(token_ok, params)
            else:
                status, body = await self._answer(method, token_ok, params)
        except BadRequest as e:
            status, body = error(e.status, e.description)
        except Exception:  # a bug here: still answer as Telegram would, and keep the traceback for the test
            self.server_errors.append(traceback.format_exc())
            status, body = error(500, "Internal Server Error")
        self.requests.append(Request(method, token_ok, params, status, received_at))
        self._changed()
        if _RAW in body:
            return web.Response(text=body[_RAW], status=status, content_type="text/html")
        return web.json_response(body, status=status)

    async def _timed_send(self, token_ok: bool, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """sendMessage, counted while in flight and answered `send_delay` seconds after it was accepted."""
        chat = params.get("chat_id")
        self.sends_in_flight += 1
        self._in_flight_per_chat[chat] = self._in_flight_per_chat.get(chat, 0) + 1
        self.peak_sends_in_flight = max(self.peak_sends_in_flight, self.sends_in_flight)
        self.peak_sends_in_flight_per_chat = max(self.peak_sends_in_flight_per_chat, self._in_flight_per_chat[chat])
        try:
            answer = await self._answer("sendMessage", token_ok, params)
            if self.send_delay > 0:
                self._changed()  # an accepted message is visible to waiters before it is answered
                await asyncio.sleep(self.send_delay)
            return answer
        finally:
            self.sends_in_flight -= 1
            self._in_flight_per_chat[chat] -= 1

    async def _answer(self, method: str, token_ok: bool, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not token_ok:
            return error(401, "Unauthorized")
        if method == "getUpdates":
            return await self._get_updates(params)
        answer = {
            "getMe": lambda p: ok(BOT_USER),
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getChatMember": self._get_chat_member,
            "getChat": self._get_chat,
            "deleteWebhook": lambda p: ok(True),
            "getWebhookInfo": lambda p: ok(
                {"url": "", "has_custom_certificate": False, "pending_update_count": len(self.pending_updates)}
            ),
        }.get(method)
        if answer is None:
            return error(404, "Not Found")
        return answer(params)

    async def _get_updates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = int_param(params, "offset", 0)
        limit = min(max(int_param(params, "limit", 100), 1), 100)  # Telegram clamps rather than refuses
        timeout = max(int_param(params, "timeout", 0), 0)
        if params.get("allowed_updates"):
            # Telegram applies it to updates created later; these are injected on purpose, so all are delivered.
            self.allowed_updates = json_list_param(params, "allowed_updates")
        if offset < 0:
            # -k: the last k pending updates, forgetting every earlier one.
            pending = self.pending_updates
            offset = pending[offset].update_id if len(pending) >= -offset else self.confirmed_offset
        if offset > self.confirmed_offset:
            self.confirmed_offset = offset
            self._changed()
        # Telegram lets one getUpdates run at a time: a newer call ends an older one held open with 409.
        self._poll_generation += 1
        generation = self._poll_generation
        deadline = time.monotonic() + timeout
        waiting = False
        try:
            while True:
                batch = [u for u in self.pending_updates if u.update_id >= offset][:limit]
                if batch or self._closed:
                    return ok([u.as_json() for u in batch])
                if generation != self._poll_generation:
                    return error(409, "Conflict: terminated by other getUpdates request; "
                                       "make sure that only one bot instance is running")
                if not waiting:
                    waiting = True
                    self._polls_waiting += 1
                    self._changed()
                if not await self._wait_changed(deadline - time.monotonic()):
                    return ok([])
        finally:
            if waiting:
                self._polls_waiting -= 1

    def _send_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self._faults:
            fault = self._faults.popleft()
            if fault.raw is not None:
                return fault.status, {_RAW: fault.raw}
            if fault.retry_after is not None:
                description = fault.description or f"Too Many Requests: retry after {fault.retry_after}"
                return error(429, description, retry_after=fault.retry_after)
            usual = "Internal Server Error" if fault.status >= 500 else "Injected error"
            return error(fault.status, fault.description or usual)
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError, TypeError):
            return error(400, "Bad Request: chat not found")
        text = text_param(params)
        if chat_id in self._blocked:
            return error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self._migrated:
            status, body = error(400, "Bad Request: group chat was upgraded to a supergroup chat")
            body["parameters"] = {"migrate_to_chat_id": self._migrated[chat_id]}
            return status, body
        markup, buttons = reply_markup_of(params)
        message = SentMessage(
            message_id=next(self._message_ids), chat_id=chat_id, text=text, received_at=time.monotonic(),
            buttons=buttons, parse_mode=params.get("parse_mode") or None, reply_markup=markup, date=int(time.time()),
        )
        # Appended here; waiters are told in `handle` once the request is recorded too.
        self.messages.append(message)
        return ok(self._message_json(message))

    def _edit_message_text(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._edit(params, text_param(params))

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._edit(params, None)

    def _edit(self, params: dict[str, Any], text: str | None) -> tuple[int, dict[str, Any]]:
        if params.get("inline_message_id"):
            return error(400, "Bad Request: inline messages are not served here")
        chat_id, message_id = int_param(params, "chat_id"), int_param(params, "message_id")
        index = next((i for i, m in enumerate(self.messages)
                      if m.chat_id == chat_id and m.message_id == message_id), None)
        if index is None:
            return error(400, "Bad Request: message to edit not found")
        old = self.messages[index]
        # As on Telegram, an edit without reply_markup leaves the message with no inline keyboard.
        markup, buttons = reply_markup_of(params)
        new_text = old.text if text is None else text
        if new_text == old.text and markup == old.reply_markup:
            return error(400, NOT_MODIFIED)
        edited = replace(
            old, text=new_text, buttons=buttons, reply_markup=markup,
            edited_at=time.monotonic(), edit_date=int(time.time()),
            history=old.history + ((old.text,) if new_text != old.text else ()),
            parse_mode=(params.get("parse_mode") or None) if text is not None else old.parse_mode,
        )
        self.messages[index] = edited
        return ok(self._message_json(edited))

    def _answer_callback_query(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_queries:
            return error(400, TOO_OLD)
        self._open_queries.discard(query_id)
        text = params.get("text")
        self.callback_answers.append(
            CallbackAnswer(query_id, str(text) if text else None, bool_param(params, "show_alert"), time.monotonic())
        )
        return ok(True)

    def _set_my_commands(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        commands = []
        for item in json_list_param(params, "commands"):
            if not isinstance(item, dict):
                raise BadRequest("Bad Request: can't parse BotCommand")
            command, description = item.get("command"), item.get("description")
            if not isinstance(command, str) or not COMMAND_RE.fullmatch(command):
                raise BadRequest("Bad Request: BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise BadRequest("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
            commands.append((command, description))
        self.command_sets[commands_key(params)] = commands
        return ok(True)

    def _get_my_commands(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        listed = self.command_sets.get(commands_key(params), [])
        return ok([{"command": c, "description": d} for c, d in listed])

    def _delete_my_commands(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.command_sets.pop(commands_key(params), None)
        return ok(True)

    def _get_chat_member(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id, user_id = int_param(params, "chat_id"), int_param(params, "user_id")
        user = dict(self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"})
        admins = self._admins.get(chat_id, [])
        # The user owns their private chat with the bot, so they may configure it as a group's creator could.
        if chat_id == user_id or (admins and admins[0] == user_id):
            return ok({"status": "creator", "user": user, "is_anonymous": False})
        if user_id in admins:
            return ok({
                "status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False,
                "can_manage_chat": True, "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False, "can_change_info": True,
                "can_invite_users": True, "can_post_stories": False, "can_edit_stories": False,
                "can_delete_stories": False, "can_pin_messages": True,
            })
        return ok({"status": "member", "user": user})

    def _get_chat(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat = self._chat_json(int_param(params, "chat_id"))
        # The fields ChatFullInfo requires; values are those of a plain chat with default settings.
        full = chat | {
            "accent_color_id": 0, "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False, "premium_subscription": False,
            },
        }
        return ok(full)

    def _chat_json(self, chat_id: int) -> dict[str, Any]:
        known = self._chats.get(chat_id)
        if known is not None:
            return dict(known)
        # A chat no test introduced: what the id says (private ids are positive), as the server always did.
        return {"id": chat_id, "type": "private" if chat_id > 0 else "group"}

    def _message_json(self, message: SentMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": message.message_id, "date": message.date, "chat": self._chat_json(message.chat_id),
            "from": BOT_USER, "text": message.text,
        }
        if message.edit_date is not None:
            body["edit_date"] = message.edit_date
        if message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
            body["reply_markup"] = message.reply_markup  # only inline keyboards are part of a Message
        return body


# -- reading params -------------------------------------------------------------------------------
@asynccontextmanager
async def running_bot_api(token: str, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[BotApiServer]:
    """Serves the fake Bot API on `host` at `port` (0: a free one) for the duration of the block."""
    server = BotApiServer(token=token)
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", server.handle)
    # A short shutdown: held-open polls are released by `_close`, anything else left is a client gone away.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    server.base_url = f"http://{bound_host}:{bound_port}"
    try:
        yield server
    finally:
        server._close()
        await runner.cleanup()
