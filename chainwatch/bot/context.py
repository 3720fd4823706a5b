"""What the bot's handlers work with: the store for their chat's settings, the engine's mailbox for anything that
reads the chain, and the outbox for every reply. Handlers never read the chain themselves: they send the engine
a message and await its answer, so nothing races a pass. A bot role process has no engine: it passes a `ChainSide`
of its own instead of the mailbox (see `chainwatch.roles.bot`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from chainwatch.alerts.directory import Directory, Subscription, build_directory
from chainwatch.bot import parse
from chainwatch.bot.texts import split_message
from chainwatch.config import Config
from chainwatch.recompute import CheckNow, Mail, Outcome, WatchesChanged
from chainwatch.store import Keyboard, Store

log = structlog.get_logger(__name__)

ENGINE_DEADLINE = 60.0  # a read the engine has not answered by then is reported as not possible now


class EngineBusy(Exception):
    """The engine did not answer in time (the node is slow or unreachable)."""


class ChatLimits:
    """Per chat: commands per minute (a sliding window) and the cooldown between reads asked with /check."""

    def __init__(self, commands_per_minute: int, check_cooldown: float, clock: Callable[[], float] = time.monotonic):
        self._per_minute = commands_per_minute
        self._cooldown = check_cooldown
        self._clock = clock
        self._recent: defaultdict[int, deque[float]] = defaultdict(deque)
        self._warned_at: dict[int, float] = {}
        self._last_check: dict[int, float] = {}

    def admit(self, chat_id: int) -> tuple[bool, bool]:
        """(whether to handle this command, whether to tell the chat to slow down: once per window)."""
        now = self._clock()
        recent = self._recent[chat_id]
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) < self._per_minute:
            recent.append(now)
            return True, False
        warned = self._warned_at.get(chat_id)
        tell = warned is None or warned <= now - 60
        if tell:
            self._warned_at[chat_id] = now
        return False, tell

    def check_wait(self, chat_id: int) -> float:
        """Seconds before this chat may ask for another read now; 0 when it may (and the clock restarts)."""
        now = self._clock()
        last = self._last_check.get(chat_id)
        if last is not None and now - last < self._cooldown:
            return self._cooldown - (now - last)
        self._last_check[chat_id] = now
        return 0.0


class ChainSide(Protocol):
    """What the handlers ask of whatever reads the chain; raises EngineBusy when it cannot answer in time."""

    async def watches_changed(self, accounts: tuple[str, ...]) -> list[Outcome]: ...
    async def read_now(self, accounts: tuple[str, ...], detailed: bool) -> list[Outcome]: ...


class Mailbox:
    """The in-process engine as a ChainSide: commands through its mailbox, answered between its passes."""

    def __init__(self, mailbox: asyncio.Queue[Mail]) -> None:
        self._mailbox = mailbox

    async def watches_changed(self, accounts: tuple[str, ...]) -> list[Outcome]:
        reply: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        return await self._ask(WatchesChanged(accounts=accounts, reply=reply))

    async def read_now(self, accounts: tuple[str, ...], detailed: bool) -> list[Outcome]:
        reply: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        return await self._ask(CheckNow(accounts=accounts, detailed=detailed, reply=reply))

    async def _ask(self, command: WatchesChanged | CheckNow) -> list[Outcome]:
        self._mailbox.put_nowait(command)
        try:
            async with asyncio.timeout(ENGINE_DEADLINE):
                return await asyncio.shield(command.reply)
        except TimeoutError:
            raise EngineBusy() from None


class BotContext:
    def __init__(
        self, config: Config, store: Store, mailbox: asyncio.Queue[Mail] | ChainSide, wake_sender: Callable[[], None],
        status: Callable[[], dict[str, object]],
    ) -> None:  # fmt: skip
        self.config = config
        self.store = store
        self._chain: ChainSide = Mailbox(mailbox) if isinstance(mailbox, asyncio.Queue) else mailbox
        self._wake_sender = wake_sender
        self.status = status
        self.limits = ChatLimits(config.bot.commands_per_minute, config.bot.check_cooldown_seconds)
        self.protocols = tuple(p.name for p in config.protocols)

    async def reply(self, chat_id: int, text: str, buttons: Keyboard = ()) -> None:
        """Queues a reply; it goes out by the outbox, after LIQUIDATABLE and CRITICAL alerts, before warnings."""
        await self.store.queue_replies(chat_id, split_message(text), buttons)
        self._wake_sender()

    async def directory(self) -> Directory:
        return build_directory(self.config, await self.store.chats.setup())

    async def watches_changed(self, accounts: Sequence[str] = ()) -> list[Outcome]:
        """Tells the engine the stored watches changed (already committed); returns readings of `accounts`."""
        return await self._chain.watches_changed(tuple(accounts))

    async def read_now(self, accounts: Sequence[str], *, detailed: bool = False) -> list[Outcome]:
        return await self._chain.read_now(tuple(accounts), detailed)

    async def resolve(self, chat_id: int, text: str) -> Subscription:
        """This chat's watch named by address or label (case-insensitive); BadArguments when there is none."""
        mine = (await self.directory()).subscriptions_of(chat_id)
        if parse.looks_like_address(text):
            address = parse.address(text)
            for subscription in mine:
                if subscription.address == address:
                    return subscription
            raise parse.BadArguments(f"{address} is not watched in this chat (see /list)")
        for subscription in mine:
            if subscription.label is not None and subscription.label.casefold() == text.casefold():
                return subscription
        raise parse.BadArguments(f"no address labelled {parse.quoted(text)} in this chat (see /list)")
