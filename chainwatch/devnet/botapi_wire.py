"""The wire side of the local Bot API server: the records it keeps of what happened (messages sent, requests, injected
updates, button answers), Telegram's limits, and the reading of a request's parameters into typed values with
Telegram-shaped errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

ChatType = Literal["private", "group", "supergroup"]
Buttons = list[list[tuple[str, str | None]]]

# Telegram's own limits, so a bot that breaks them fails here as it would in production.
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


@dataclass(frozen=True)
class SentMessage:
    """A message the bot sent and the server accepted; `received_at` is on `time.monotonic()`.

    Edits replace the record in `BotApiServer.messages` (same position) with `text`/`buttons` updated and the
    earlier texts in `history`, oldest first. `buttons` are the inline keyboard as (text, callback_data) rows.
    """

    message_id: int
    chat_id: int
    text: str
    received_at: float
    buttons: Buttons = field(default_factory=list)
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    date: int = 0
    history: tuple[str, ...] = ()
    edited_at: float | None = None
    edit_date: int | None = None


@dataclass(frozen=True)
class Request:
    """Any request that reached the server, accepted or not; `received_at` is when it arrived."""

    method: str
    token_ok: bool
    params: dict[str, Any]
    status: int
    received_at: float


@dataclass(frozen=True)
class Update:
    """An update a test injected, as the bot receives it: `{"update_id": ..., kind: payload}`."""

    update_id: int
    kind: Literal["message", "callback_query"]
    payload: dict[str, Any]
    injected_at: float

    def as_json(self) -> dict[str, Any]:
        return {"update_id": self.update_id, self.kind: self.payload}

    def describe(self) -> str:
        said = self.payload.get("text") if self.kind == "message" else self.payload.get("data")
        return f"{self.update_id} {self.kind} in chat {chat_id_of(self.payload)}: {said!r}"


@dataclass(frozen=True)
class CallbackAnswer:
    """An accepted answerCallbackQuery: what the pressing user was shown."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    received_at: float


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: int | None
    description: str | None = None  # instead of the status's usual one
    raw: str | None = None  # answered as is, not as JSON: a proxy's HTML error page, a truncated body


class BadRequest(Exception):
    """Raised while reading params; becomes a Telegram-shaped error answer instead of a 500."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


async def params_of(request: web.Request) -> dict[str, Any]:
    # aiogram's AiohttpSession posts form data (urlencoded, or multipart with files); other clients send JSON.
    try:
        if request.content_type == "application/json":
            body = await request.json()
            return dict(body) if isinstance(body, dict) else {}
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    except ValueError:  # bad JSON or a broken form body
        raise BadRequest("Bad Request: can't parse request body") from None
    return dict(request.query)


def int_param(params: dict[str, Any], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"Bad Request: parameter {name} is required")
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"Bad Request: field {name} must be an integer") from None


def bool_param(params: dict[str, Any], name: str) -> bool:
    return params.get(name) in (True, "true", "True", "1", 1)


def json_param(params: dict[str, Any], name: str) -> Any:
    raw = params.get(name)
    if not isinstance(raw, str):
        return raw  # absent, or already decoded from a JSON body
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest(f"Bad Request: can't parse {name} JSON object") from None


def json_list_param(params: dict[str, Any], name: str) -> list[Any]:
    value = json_param(params, name)
    if not isinstance(value, list):
        raise BadRequest(f"Bad Request: {name} must be a JSON array")
    return value


def text_param(params: dict[str, Any]) -> str:
    text = str(params.get("text", ""))
    if not text.strip():
        raise BadRequest("Bad Request: message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise BadRequest("Bad Request: message is too long")
    return text


def reply_markup_of(params: dict[str, Any]) -> tuple[dict[str, Any] | None, Buttons]:
    """The markup as sent, and its inline keyboard as (text, callback_data) rows; Telegram's checks on them."""
    markup = json_param(params, "reply_markup")
    if markup is None:
        return None, []
    if not isinstance(markup, dict):
        raise BadRequest("Bad Request: can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup, []  # a reply keyboard or its removal: nothing to press in a callback
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BadRequest("Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array "
                          "of Arrays")
    buttons: Buttons = []
    for row in rows:
        parsed = []
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise BadRequest("Bad Request: can't parse inline keyboard button: Text buttons are unallowed "
                                  "in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not (isinstance(data, str) and 1 <= len(data.encode()) <= MAX_CALLBACK_DATA):
                raise BadRequest("Bad Request: BUTTON_DATA_INVALID")
            parsed.append((button["text"], data))
        buttons.append(parsed)
    return markup, buttons


def commands_key(params: dict[str, Any]) -> tuple[str, str]:
    scope = json_param(params, "scope") or {"type": "default"}
    if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
        raise BadRequest("Bad Request: can't parse BotCommandScope")
    parts = [scope["type"]] + [str(scope[k]) for k in ("chat_id", "user_id") if k in scope]
    return ":".join(parts), str(params.get("language_code") or "")


def chat_id_of(payload: dict[str, Any]) -> Any:
    return (payload.get("chat") or payload.get("message", {}).get("chat") or {}).get("id")


def default_chat_type(chat_id: int) -> ChatType:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def utf16_len(text: str) -> int:
    # Telegram measures text (and entity offsets) in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def error(status: int, description: str, *, retry_after: int | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return status, body


