"""LISTEN on a channel for one chain's notifications, on a connection of its own, reconnecting when it drops.

A notification is a wake-up, never the only one: whoever listens also polls, so a notification lost while the
connection was down delays work by a poll period, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

log = structlog.get_logger(__name__)

RECONNECT_SECONDS = 1.0


async def listen(url: str, channel: str, chain_id: int, on_notify: Callable[[], None], stop: asyncio.Event) -> None:
    """Calls `on_notify` for each notification on `channel` whose payload is `chain_id`, until `stop` (or
    cancelled). Also calls it after each (re)connection: what was notified while away is not lost."""
    wanted = str(chain_id)

    def received(connection: object, pid: int, channel_name: str, payload: str) -> None:
        if payload == wanted:
            on_notify()

    while not stop.is_set():
        try:
            connection = await asyncpg.connect(url, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
            log.warning("listen.unreachable", channel=channel, reason=type(error).__name__)
            await _pause(stop, RECONNECT_SECONDS)
            continue
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _: closed.set())
        try:
            await connection.add_listener(channel, received)
            on_notify()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(closed.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("listen.dropped", channel=channel, reason=type(error).__name__)
        finally:
            connection.terminate()
        if not stop.is_set():
            await _pause(stop, RECONNECT_SECONDS)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
