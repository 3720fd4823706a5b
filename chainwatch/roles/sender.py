"""The sender role: one active per bot token drains the outbox through the usual `Sender`, under the bot-wide
budget; standbys wait for its lock.

Woken by LISTEN on OUTBOX_CHANNEL (the writers NOTIFY in the transaction that queues the rows) and by a poll
every second as a safety net. Every pick of due messages first proves, from the store's own connection, that
this process still holds the lock: a holder cut off from its lock stops picking before a standby can start.
A send in flight when the lock is lost is finished and recorded (at most that one message goes twice).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from chainwatch.alerts.sender import Sender
from chainwatch.app import StartupError, check_bot, send_limits, transport_for
from chainwatch.leadership import Leadership
from chainwatch.roles import OUTBOX_CHANNEL, RoleContext, RoleError, token_duty
from chainwatch.roles.duty import hold_and_run
from chainwatch.roles.listen import listen
from chainwatch.store import OutboxMessage

log = structlog.get_logger(__name__)

POLL_SECONDS = 1.0


async def run(context: RoleContext) -> None:
    await hold_and_run(context, "sender", token_duty("sender", context.config), lambda held: _send(context, held))


class FencedOutbox:
    """The store as the Sender sees it, with each pick of due messages fenced by the lock."""

    def __init__(self, store: Any, held: Leadership) -> None:
        self._store = store
        self._held = held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def due_messages(self, now: float, limit: int = 100) -> list[OutboxMessage]:
        await self._store.check(self._held.fenced)
        return await self._store.due_messages(now, limit)  # type: ignore[no-any-return]


async def _send(context: RoleContext, held: Leadership) -> None:
    config, store = context.config, context.store
    if not hasattr(store, "check"):
        raise RoleError("the sender role needs [storage] url = \"postgresql://...\"")
    async with transport_for(config) as transport:
        try:
            await check_bot(transport)
        except StartupError as error:
            raise RoleError(str(error)) from None

        async def chat_gone(chat_id: int) -> None:
            # The store NOTIFYs the ingest in the same transaction: it holds the chat's alerts from then on.
            if await store.chats.pause_chat(chat_id):
                log.warning("bot.chat_paused", chat_id=chat_id)

        sender = Sender(FencedOutbox(store, held), transport, on_chat_gone=chat_gone,  # type: ignore[arg-type]
                        **send_limits(config))  # fmt: skip
        tasks = [
            asyncio.create_task(sender.run()),
            asyncio.create_task(listen(context.database_url, OUTBOX_CHANNEL, config.chain.chain_id, sender.wake,
                                       context.stop)),  # fmt: skip
            asyncio.create_task(_poll(sender)),
        ]
        stopping = asyncio.create_task(context.stop.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopping}:
                task.result()  # a crashed sender (the store failing) ends the role loudly
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            # The sender's own cancellation finishes and records what is in flight before it returns.
            await asyncio.gather(*tasks, return_exceptions=True)


async def _poll(sender: Sender) -> None:
    """Wakes the sender every second: a notification lost with a dropped LISTEN connection costs a second."""
    while True:
        await asyncio.sleep(POLL_SECONDS)  # a period, not synchronisation
        sender.wake()
