"""The engine's mailbox: chain events from the listener and commands from the bot, one queue, so the watched set
and the exposure index change only in the engine's loop."""

from __future__ import annotations

import asyncio

import msgspec

from chainwatch.chain import ChainEvent
from chainwatch.read_pass import Outcome


class WatchesChanged(msgspec.Struct, frozen=True, kw_only=True, tag="watches"):
    """The chats' watches, thresholds or mutes changed in the store: rebuild the directory, start (or stop)
    reading what it adds (or drops), and answer `reply` with readings of `accounts` at the head."""

    accounts: tuple[str, ...] = ()
    reply: asyncio.Future[list[Outcome]]


class CheckNow(msgspec.Struct, frozen=True, kw_only=True, tag="check"):
    """Read `accounts` on every protocol at the head, ahead of any scheduled re-read, and answer `reply`.
    `detailed` asks for per-asset lines (for /position and /repay)."""

    accounts: tuple[str, ...]
    detailed: bool = False
    reply: asyncio.Future[list[Outcome]]


EngineCommand = WatchesChanged | CheckNow
Mail = ChainEvent | EngineCommand
