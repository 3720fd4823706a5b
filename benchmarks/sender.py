"""Sender throughput against a Bot API that takes 100 or 200 ms per request: messages/s and CPU per message.

Figures, not a test: `python -m benchmarks.sender [--messages 200] [--chats 50]`. Each run queues `--messages`
alerts spread over `--chats` chats in a fresh SQLite outbox and drains it through the real aiogram transport into
the local Bot API server (loopback), under Telegram's limits as configured by default (25 messages/s for the bot,
a per-chat interval of 1 s).

The Bot API server runs in a process of its own (`--serve`), as Telegram would be: the CPU printed is this
process's alone, the sender's with its SQLite thread, and not the server's parsing and answering (it is what
the figures before this split, about a third of them, included) nor two event loops contending for one GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chainwatch.alerts.sender import Sender
from chainwatch.alerts.telegram import TelegramTransport
from chainwatch.devnet.botapi import running_bot_api
from chainwatch.logs import configure_logging
from chainwatch.model import AlertKind, Level, PositionKey
from chainwatch.store import LevelChange, PendingMessage, StoredLevel, open_store

TOKEN = "123456:BENCH-token"


class BotApiProcess:
    """The local Bot API in a child process: its base URL, and how many messages it accepted, asked at the end."""

    def __init__(self, process: asyncio.subprocess.Process, base_url: str) -> None:
        self._process = process
        self.base_url = base_url

    async def messages_accepted(self) -> int:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(b"count\n")
        await self._process.stdin.drain()
        return int(await self._process.stdout.readline())


@asynccontextmanager
async def bot_api_process(delay: float) -> AsyncIterator[BotApiProcess]:
    """Starts `python -m benchmarks.sender --serve DELAY` and stops it after the block."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.sender", "--serve", str(delay),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        base_url = (await process.stdout.readline()).decode().strip()
        if not base_url:
            raise RuntimeError("the Bot API process exited before it served")
        yield BotApiProcess(process, base_url)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        await process.wait()


async def serve(delay: float) -> None:
    """The child's side: serve, print the base URL, answer `count` lines with the messages accepted, end at EOF."""
    async with running_bot_api(TOKEN) as server:
        server.send_delay = delay
        print(server.base_url, flush=True)
        while await asyncio.to_thread(sys.stdin.readline):
            print(len(server.messages), flush=True)


async def one_run(delay: float, concurrency: int, messages: int, chats: int, rate: float) -> tuple[float, float]:
    """(messages/s, sender CPU ms per message) for one drain of `messages` queued alerts."""
    with tempfile.TemporaryDirectory() as work:
        async with bot_api_process(delay) as server, open_store(Path(work) / "bench.db") as store:
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
            accepted = await server.messages_accepted()
            assert left == 0 and accepted == messages, (left, accepted)
    return messages / wall, cpu / messages * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--rate", type=float, default=25.0, help="the bot-wide limit (Telegram's is about 30/s)")
    parser.add_argument("--delays", type=float, nargs="+", default=[0.1, 0.2], help="seconds per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="sends in flight at once")
    parser.add_argument("--serve", type=float, metavar="DELAY", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve is not None:
        return await serve(args.serve)
    configure_logging(level="info")  # as deployed: the sender's own lines are part of its cost
    print(f"{args.messages} messages over {args.chats} chats, bot-wide limit {args.rate:g}/s")
    print(f"{'per request':>12} {'concurrency':>12} {'messages/s':>11} {'CPU ms/message':>15}")
    for delay in args.delays:
        for concurrency in args.concurrency:
            rate, cpu = await one_run(delay, concurrency, args.messages, args.chats, args.rate)
            print(f"{delay * 1000:>9.0f} ms {concurrency:>12} {rate:>11.1f} {cpu:>15.2f}")


if __name__ == "__main__":
    asyncio.run(main())
