"""A local HTTP server speaking enough of the Telegram Bot API for tests and the demo, with fault injection.

`async with running_bot_api(token) as server:` then point the bot at `server.base_url`; it answers
`POST /bot<token>/<method>` for getMe and sendMessage with Bot API shaped JSON, and records what it accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 0, "is_bot": True, "first_name": "chainwatch test", "username": "chainwatch_test_bot"}


@dataclass(frozen=True)
class SentMessage:
    """A message the server accepted; `received_at` is on `time.monotonic()`."""

    message_id: int
    chat_id: int
    text: str
    received_at: float


@dataclass(frozen=True)
class Request:
    """Any request that reached the server, accepted or not."""

    method: str
    token_ok: bool
    params: dict[str, Any]
    status: int
    received_at: float


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: int | None


@dataclass
class BotApiServer:
    token: str
    base_url: str = ""
    messages: list[SentMessage] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _faults: deque[_Fault] = field(default_factory=deque)
    _blocked: set[int] = field(default_factory=set)
    _migrated: dict[int, int] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def fail_next(self, n: int = 1, status: int = 429, retry_after: int | None = 2) -> None:
        """Answers the next `n` sendMessage calls with `status` (a 429 carries `retry_after` as Telegram does)."""
        self._faults.extend(_Fault(status, retry_after if status == 429 else None) for _ in range(n))

    def migrate_chat(self, old: int, new: int) -> None:
        """Answers sendMessage to `old` as Telegram does for a group upgraded to a supergroup with id `new`."""
        self._migrated[old] = new

    def block_chat(self, chat_id: int) -> None:
        """Answers sendMessage to `chat_id` with 403, as when the user blocked the bot."""
        self._blocked.add(chat_id)

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.messages if m.chat_id == chat_id]

    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[SentMessage]:
        """Waits until at least `n` messages were accepted; fails listing what arrived if `timeout` passes."""
        await self._wait_until(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        return list(self.messages)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Waits until at least `n` requests (accepted or refused) reached the server."""
        await self._wait_until(lambda: len(self.requests) >= n, timeout, f"{n} requests")
        return list(self.requests)

    async def _wait_until(self, predicate: Any, timeout: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            except TimeoutError:
                arrived = "\n".join(f"  {m}" for m in self.messages) or "  (none)"
                asked = "\n".join(f"  {r.method} -> {r.status}" for r in self.requests) or "  (none)"
                raise AssertionError(
                    f"waited {timeout} s for {what}; messages accepted:\n{arrived}\nrequests:\n{asked}"
                ) from None

    # -- the HTTP side ------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        token_ok = request.match_info["token"] == self.token
        params = await _params_of(request)
        status, body = self._answer(method, token_ok, params)
        async with self._changed:
            self.requests.append(Request(method, token_ok, params, status, time.monotonic()))
            self._changed.notify_all()
        return web.json_response(body, status=status)

    def _answer(self, method: str, token_ok: bool, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not token_ok:
            return _error(401, "Unauthorized")
        match method:
            case "getMe":
                return 200, {"ok": True, "result": BOT_USER}
            case "sendMessage":
                return self._send_message(params)
            case _:
                return _error(404, "Not Found")

    def _send_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self._faults:
            fault = self._faults.popleft()
            if fault.retry_after is not None:
                return _error(
                    429, f"Too Many Requests: retry after {fault.retry_after}", retry_after=fault.retry_after
                )
            return _error(fault.status, "Internal Server Error" if fault.status >= 500 else "Injected error")
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            return _error(400, "Bad Request: chat not found")
        text = str(params.get("text", ""))
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if chat_id in self._blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self._migrated:
            status, body = _error(400, "Bad Request: group chat was upgraded to a supergroup chat")
            body["parameters"] = {"migrate_to_chat_id": self._migrated[chat_id]}
            return status, body
        message = SentMessage(len(self.messages) + 1, chat_id, text, time.monotonic())
        # Appended here, but waiters are told in `handle` under the condition's lock.
        self.messages.append(message)
        result = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
            "text": text,
        }
        return 200, {"ok": True, "result": result}


async def _params_of(request: web.Request) -> dict[str, Any]:
    # aiogram's AiohttpSession posts form data (urlencoded, or multipart with files); other clients send JSON.
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    return dict(request.query)


def _error(status: int, description: str, *, retry_after: int | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return status, body


@asynccontextmanager
async def running_bot_api(token: str) -> AsyncIterator[BotApiServer]:
    """Serves the fake Bot API on 127.0.0.1 at a free port for the duration of the block."""
    server = BotApiServer(token=token)
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base_url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
