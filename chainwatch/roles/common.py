"""What the ingest and worker role processes share: their reader, LISTEN, and a `python -m` entry for operators."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import asyncpg
import structlog

from chainwatch.config import Config
from chainwatch.reader import Reader
from chainwatch.roles import Runner, RoleContext
from chainwatch.rpc import Rpc

log = structlog.get_logger(__name__)

# NOTIFY from workers to the ingest: results stored (payload: the chain id).
DONE_CHANNEL = "chainwatch_done"


def reader_for(config: Config, rpc: Rpc) -> Reader:
    chain = config.chain
    return Reader(rpc, chain.multicall3, max_calls=chain.calls_per_batch, max_gas=chain.gas_per_call,
                  concurrency=chain.read_concurrency)  # fmt: skip


@asynccontextmanager
async def listening(url: str, chain_id: int, channels: Sequence[str], wake: Callable[[str], None]) -> AsyncIterator[None]:
    """LISTENs on `channels` on a connection of its own; `wake(channel)` for each NOTIFY of this chain. A lost
    connection only costs latency: every role also polls."""
    connection = await asyncpg.connect(url)
    mine = str(chain_id)

    def on_notify(_connection: object, _pid: int, channel: str, payload: str) -> None:
        if payload == mine:
            wake(channel)

    try:
        for channel in channels:
            await connection.add_listener(channel, on_notify)
        yield
    finally:
        connection.terminate()


def main(role: str, runner: Runner | Callable[[argparse.Namespace], Runner], argv: Sequence[str] | None = None, *,
         arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:  # fmt: skip
    """`python -m chainwatch.roles.<role> CONFIG`: one role in this process, until SIGINT/SIGTERM."""
    from chainwatch.cli import _load
    from chainwatch.logs import configure_logging
    from chainwatch.storage import open_store

    parser = argparse.ArgumentParser(prog=f"python -m chainwatch.roles.{role}")
    parser.add_argument("config")
    parser.add_argument("--name", default=f"{socket.gethostname()}:{os.getpid()}", help="this process in logs")
    parser.add_argument("--lock-url", help="the PostgreSQL URL of the leadership lock (default: [storage] url)")
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args(argv)
    if arguments is not None:
        runner = runner(args)  # type: ignore[call-arg,assignment]
    configure_logging(level="info")
    config = _load(args.config)
    if config.storage.url is None:
        raise SystemExit(f"chainwatch: {role}: [storage] url must be a postgresql:// URL to run roles apart")
    url = config.storage.url.reveal()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_store(config) as store:
            context = RoleContext(config=config, store=store, stop=stop, name=args.name,
                                  database_url=args.lock_url or url)  # fmt: skip
            log.info("role.started", role=role, name=args.name)
            await runner(context)  # type: ignore[misc,arg-type]

    asyncio.run(serve())
    return 0
