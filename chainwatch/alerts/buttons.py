"""Inline buttons and their callback data: self-contained (no server-side state), at most 64 bytes, so a button
pressed after a restart still means what it meant when it was sent.

Data is `<action>:<address as 40 hex digits>[:<argument>]`; a position is named by a short hash of its key,
which a 66-character market id could never fit in.
"""

from __future__ import annotations

import enum
import zlib

from eth_utils import to_checksum_address

from chainwatch.model import PositionKey, Record
from chainwatch.store import Button, Keyboard

MAX_CALLBACK_DATA = 64
MUTE_FROM_ALERT_SECONDS = 3600


class Action(enum.Enum):
    POSITION = "pos"
    MUTE = "mute"
    CHECK = "chk"
    WATCH = "watch"
    FORGET = "stop"


class Pressed(Record, frozen=True, kw_only=True):
    """A decoded callback: what to do, to which address (empty for FORGET), with which argument."""

    action: Action
    address: str = ""
    argument: str = ""


class BadCallback(ValueError):
    """Callback data this bot did not make (an old format, a forged query)."""


def position_tag(key: PositionKey) -> str:
    return f"{zlib.crc32(key.as_text().encode()):08x}"


def callback_data(action: Action, address: str = "", argument: str = "") -> str:
    parts = [action.value, address.lower().removeprefix("0x")] + ([argument] if argument else [])
    data = ":".join(parts)
    if len(data.encode()) > MAX_CALLBACK_DATA:
        raise ValueError(f"callback data over {MAX_CALLBACK_DATA} bytes: {data!r}")
    return data


def parse_callback(data: str | None) -> Pressed:
    if not data or len(data.encode()) > MAX_CALLBACK_DATA:
        raise BadCallback("empty or oversized callback data")
    action_text, _, rest = data.partition(":")
    try:
        action = Action(action_text)
    except ValueError:
        raise BadCallback(f"unknown action {action_text!r}") from None
    hex_address, _, argument = rest.partition(":")
    if action is Action.FORGET:
        return Pressed(action=action, argument=argument or hex_address)
    if len(hex_address) != 40 or any(c not in "0123456789abcdef" for c in hex_address):
        raise BadCallback("no address in callback data")
    return Pressed(action=action, address=to_checksum_address("0x" + hex_address), argument=argument)


def alert_buttons(key: PositionKey) -> Keyboard:
    """Under every alert: the position in detail, an hour of quiet, a fresh read."""
    return (
        (
            Button(text="Position", data=callback_data(Action.POSITION, key.account, position_tag(key))),
            Button(text="Mute 1h", data=callback_data(Action.MUTE, key.account, str(MUTE_FROM_ALERT_SECONDS))),
            Button(text="Check now", data=callback_data(Action.CHECK, key.account)),
        ),
    )


def watch_button(address: str) -> Keyboard:
    return ((Button(text="Watch", data=callback_data(Action.WATCH, address)),),)


def forget_buttons() -> Keyboard:
    return ((Button(text="Yes, forget everything", data=callback_data(Action.FORGET, argument="yes")),
             Button(text="No, keep it", data=callback_data(Action.FORGET, argument="no"))),)  # fmt: skip
