"""Sender throughput against a Bot API that takes 100 or 200 ms per request: messages/s and CPU per message.

Figures, not a test: `python -m benchmarks.sender [--messages 200] [--chats 50]`. Each run queues `--messages`
alerts spread over `--chats` chats in a fresh SQLite outbox and drains it through the real aiogram transport into
the local Bot API server (same process, loopback), under Telegram's limits as configured by default
(25 messages/s for the bot, a per-chat interval of 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from chainwatch.alerts.sender import Sender
from chainwatch.alerts.telegram import TelegramTransport
from chainwatch.devnet.botapi import running_bot_api
from chainwatch.logs import configure_logging
from chainwatch.model import AlertKind, Level, PositionKey
from chainwatch.store import LevelChange, PendingMessage, StoredLevel, open_store

TOKEN = "123456:BENCH-token"


async def one_run(delay: float, concurrency: int, messages: int, chats: int, rate: float) -> tuple[float, float]:
    """(messages/s, CPU ms per message) for one drain of `messages` queued alerts."""
    with tempfile.TemporaryDirectory() as work:
        async with running_bot_api(TOKEN) as server, open_store(Path(work) / "bench.db") as store:
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
                wall, cpu = time.monotonic(), time.process_time()
                left = await sender.drain(time.monotonic() + 600)
                wall, cpu = time.monotonic() - wall, time.process_time() - cpu
            assert left == 0 and len(server.messages) == messages
    # CPU includes the in-process Bot API server's share: an upper bound on the sender's own.
    return messages / wall, cpu / messages * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--rate", type=float, default=25.0, help="the bot-wide limit (Telegram's is about 30/s)")
    args = parser.parse_args()
    configure_logging(level="warning")  # one alert.sent line per message would swamp the figures
    print(f"{args.messages} messages over {args.chats} chats, bot-wide limit {args.rate:g}/s")
    print(f"{'per request':>12} {'concurrency':>12} {'messages/s':>11} {'CPU ms/message':>15}")
    for delay in (0.1, 0.2):
        for concurrency in (1, 8):
            rate, cpu = await one_run(delay, concurrency, args.messages, args.chats, args.rate)
            print(f"{delay * 1000:>9.0f} ms {concurrency:>12} {rate:>11.1f} {cpu:>15.2f}")


if __name__ == "__main__":
    asyncio.run(main())
