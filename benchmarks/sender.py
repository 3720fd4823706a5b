"""Sender throughput against a Bot API that takes 100 or 200 ms per request: messages/s and CPU per message.

Figures, not a test: `python -m benchmarks.sender [--messages 200] [--chats 50]`. Each run queues `--messages`
alerts spread over `--chats` chats in a fresh SQLite outbox and drains it through the real aiogram transport into
the local Bot API server (same process, loopback), under Telegram's limits as configured by default
(25 messages/s for the bot, a per-chat interval of 1 s).

The Bot API server runs on an event loop of its own in its own thread, so that its CPU (parsing requests,
answering them) can be told apart from the sender's: "sender CPU" is the process's CPU less that thread's, and
still includes the store's SQLite thread; "with server" is the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from chainwatch.alerts.sender import Sender
from chainwatch.alerts.telegram import TelegramTransport
from chainwatch.devnet.botapi import BotApiServer, running_bot_api
from chainwatch.logs import configure_logging
from chainwatch.model import AlertKind, Level, PositionKey
from chainwatch.store import LevelChange, PendingMessage, StoredLevel, open_store

TOKEN = "123456:BENCH-token"


@asynccontextmanager
async def bot_api_in_a_thread() -> AsyncIterator[tuple[BotApiServer, Callable[[], float]]]:
    """The local Bot API served from a thread of its own; yields it and that thread's CPU clock (seconds)."""
    loop = asyncio.new_event_loop()
    started: asyncio.Future[BotApiServer] = asyncio.get_running_loop().create_future()
    caller = asyncio.get_running_loop()
    stop = asyncio.Event()  # bound to `loop` on first use, inside the thread

    async def serve() -> None:
        async with running_bot_api(TOKEN) as server:
            caller.call_soon_threadsafe(started.set_result, server)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="bot-api", daemon=True)
    thread.start()
    server = await started
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    try:
        yield server, lambda: time.clock_gettime(clock)
    finally:
        loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(thread.join)
        loop.close()


async def one_run(delay: float, concurrency: int, messages: int, chats: int, rate: float) -> tuple[float, float, float]:
    """(messages/s, sender CPU ms per message, whole process CPU ms per message) for one drain of `messages`."""
    with tempfile.TemporaryDirectory() as work:
        async with bot_api_in_a_thread() as (server, server_cpu), open_store(Path(work) / "bench.db") as store:
            server.send_delay = delay
            await store.record([
                LevelChange(
                    chat_id=n % chats + 1,
                    key=PositionKey(protocol="aave_v3", account=f"0x{n:040x}"),
                    level=StoredLevel(level=Level.WARN, health_factor=1.4, block=1),
                    message=PendingMessage(priority=AlertKind.WARN.priority, chat_id=n % chats + 1,
                                           text=f"WARN #{n}", kind="WARN"),  # fmt: skip
                )
                for n in range(messages)
            ])
            async with TelegramTransport(TOKEN, server.base_url, None) as transport:
                sender = Sender(store, transport, messages_per_second=rate, concurrency=concurrency)
                wall, cpu, served = time.monotonic(), time.process_time(), server_cpu()
                left = await sender.drain(time.monotonic() + 600)
                wall, cpu, served = time.monotonic() - wall, time.process_time() - cpu, server_cpu() - served
            assert left == 0 and len(server.messages) == messages
    return messages / wall, (cpu - served) / messages * 1000, cpu / messages * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--rate", type=float, default=25.0, help="the bot-wide limit (Telegram's is about 30/s)")
    parser.add_argument("--delays", type=float, nargs="+", default=[0.1, 0.2], help="seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="sends in flight at once")
    args = parser.parse_args()
    configure_logging(level="info")  # as deployed: the sender's own lines are part of its cost
    print(f"{args.messages} messages over {args.chats} chats, bot-wide limit {args.rate:g}/s")
    print(f"{'per request':>12} {'concurrency':>12} {'messages/s':>11} {'sender CPU ms/msg':>18} {'with server':>12}")
    for delay in args.delays:
        for concurrency in args.concurrency:
            rate, cpu, total = await one_run(delay, concurrency, args.messages, args.chats, args.rate)
            print(f"{delay * 1000:>9.0f} ms {concurrency:>12} {rate:>11.1f} {cpu:>18.2f} {total:>12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
