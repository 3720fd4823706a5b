"""The watcher service: start-up -> main loop -> shutdown, with every resource stacked in one place.

Data flows one way: listener -> engine (targeted recompute) -> tracker (alert state) -> outbox -> sender.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import TYPE_CHECKING
from contextlib import AsyncExitStack

import structlog

from chainwatch import metrics
from chainwatch.alerts.directory import NO_CHAT, Directory, build_directory
from chainwatch.alerts.sender import RetryLater, Sender, TransportBroken
from chainwatch.alerts.telegram import StdoutTransport, TelegramTransport
from chainwatch.alerts.tracker import Tracker
from chainwatch.chain import Head
from chainwatch.config import Config, Watch
from chainwatch.index import Target
from chainwatch.listeners.websocket import BadEndpoint, ChainListener
from chainwatch.protocols.base import AccountReading, ReadError
from chainwatch.protocols.registry import protocol_from_config
from chainwatch.reader import ReadFailed, Reader
from chainwatch.recompute import Engine, Mail, WatchesChanged, read_targets
from chainwatch.rpc import Rpc, RpcError
from chainwatch.postgres_url import StorageUnavailable
from chainwatch.schema import SchemaTooNew
from chainwatch.storage import open_store
from chainwatch.storage_port import StorePort
from chainwatch.startup import StopRequested, retry_until_up

if TYPE_CHECKING:
    from chainwatch.bot.service import BotService

log = structlog.get_logger(__name__)

SHUTDOWN_DRAIN_SECONDS = 10.0


class StartupError(Exception):
    """The service cannot start as configured; the text says what to fix."""


def watch_targets(config: Config) -> dict[Target, Watch]:
    """Every (protocol, account) pair the config asks to watch."""
    return {
        Target(protocol=protocol.name, account=watch.address): watch
        for watch in config.watch
        for protocol in config.protocols_for(watch)
    }


def operator_chats(config: Config) -> dict[str, list[int]]:
    """Account -> the chat each operator watch of it alerts (NO_CHAT for the transport's default)."""
    chats: dict[str, list[int]] = {}
    for watch in config.watch:
        chats.setdefault(watch.address, []).append(config.chat_id_for(watch) or NO_CHAT)
    return chats


class Watcher:
    """One running chainwatch. `ready` is set once the first subscription is live."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ready = asyncio.Event()
        self.engine: Engine | None = None
        self.listener: ChainListener | None = None
        self.store: StorePort | None = None
        self.sender: Sender | None = None
        self.bot: BotService | None = None
        self.metrics_address: str | None = None  # HOST:PORT actually bound, when [metrics] is set

    async def wait_settled(self, block: int) -> None:
        """Returns once `block` is processed and every message it caused has left the outbox (sent or given up)."""
        assert self.engine is not None and self.store is not None and self.sender is not None
        await self.engine.wait_processed(block)
        await self.engine.wait_caught_up()  # a restart's first reads, done after subscribing, may still be going
        while await self.store.pending_count():
            self.sender.settled.clear()
            if await self.store.pending_count():
                await self.sender.settled.wait()

    async def _open_store(self, stack: AsyncExitStack) -> StorePort:
        try:
            return await stack.enter_async_context(open_store(self.config))
        except (StorageUnavailable, SchemaTooNew) as error:
            raise StartupError(f"storage: {error}") from None
        except (OSError, sqlite3.Error) as error:
            # Checked at load too; this is what changed since (permissions, a full disk, a foreign file).
            raise StartupError(f"storage.path: cannot open {self.config.storage.path}: {error}") from None

    async def serve(self, stop: asyncio.Event) -> None:
        metrics.CHAIN.reset()  # one watcher per process in production; tests run many, one after another
        async with AsyncExitStack() as stack:
            config = self.config
            store = self.store = await self._open_store(stack)
            rpc = Rpc(config.chain.rpc_endpoints)
            stack.push_async_callback(rpc.close)
            try:
                await retry_until_up("chain_id", lambda: self._check_chain(rpc), stop)
            except StopRequested:
                log.info("watcher.stopped", during="start-up")
                return
            if config.metrics is not None:
                from chainwatch.health import OutboxStats, serving

                async def outbox() -> dict[str, OutboxStats]:
                    stats = await store.outbox_stats(time.time())
                    return {kind: OutboxStats(count=n, oldest_age_seconds=age) for kind, (n, age) in stats.items()}

                self.metrics_address = await stack.enter_async_context(serving(config.metrics, outbox))
            transport = await stack.enter_async_context(self._transport())
            await check_bot(transport)
            mailbox: asyncio.Queue[Mail] = asyncio.Queue()

            async def load_directory() -> Directory:
                return build_directory(config, await store.chats.setup())

            async def chat_gone(chat_id: int) -> None:
                # Blocked or removed from the chat: keep its watches, hold its alerts until it writes again.
                if await store.chats.pause_chat(chat_id):
                    log.warning("bot.chat_paused", chat_id=chat_id)
                    mailbox.put_nowait(WatchesChanged(reply=asyncio.get_running_loop().create_future()))

            sender = self.sender = Sender(store, transport, on_chat_gone=chat_gone, **self._send_limits())
            adopted = await store.adopt_legacy_levels(operator_chats(config))
            if adopted:
                log.info("store.levels_adopted", levels=adopted)
            directory = await load_directory()
            tracker = await Tracker.load(store, directory, sender.wake, buttons=config.bot_enabled)
            reader = _reader(config, rpc)
            protocols = {p.name: protocol_from_config(p, log_range=config.chain.max_log_range) for p in config.protocols}
            engine = self.engine = Engine(
                protocols, directory.targets(), reader, tracker, store, refresh=config.refresh,
                load_directory=load_directory, max_reorg_depth=config.chain.max_reorg_depth,
                unpriced_after=config.alerts.unpriced_after,
            )  # fmt: skip
            previous = await store.cursor()

            async def first_read() -> Head:
                head = await rpc.head()
                # A restart knows every position's last health: it subscribes first and reads them riskiest
                # first while it listens, instead of leaving the chain unheard for the whole first read.
                await engine.start(head, rpc, read_after_subscribing=previous is not None)
                return head

            try:
                head = await retry_until_up("first_read", first_read, stop)
            except StopRequested:
                log.info("watcher.stopped", during="start-up")
                return
            except (RpcError, ReadFailed, ReadError) as error:
                raise StartupError(f"cannot read the configured protocols on chain: {error}") from None
            log.info("watcher.started", block=head.number, resumed_after=None if previous is None else previous.number,
                     positions=engine.watched_count())  # fmt: skip
            listener = self.listener = ChainListener(
                config.chain.ws_urls,
                rpc,
                mailbox,  # type: ignore[arg-type]  # the listener only puts chain events in it
                log_filter=engine.log_filter,
                resume_from=engine.resume_from,
                max_log_range=config.chain.max_log_range,
                stall_seconds=config.chain.stall_seconds,
                primary_probe_seconds=config.chain.primary_probe_seconds,
                on_subscribed=self.ready.set,
            )
            engine.on_sources_changed = listener.reconnect
            bot = None
            if config.bot_enabled and isinstance(transport, TelegramTransport):
                from chainwatch.bot.context import BotContext
                from chainwatch.bot.service import BotService

                def status() -> dict[str, object]:
                    return {
                        "processed_block": None if engine.processed is None else engine.processed.number,
                        "processed_at": engine.processed_at,
                        "positions": tracker.positions_count(),
                        "positions_of": tracker.positions_of,
                    }

                bot = self.bot = BotService(transport.bot, BotContext(config, store, mailbox, sender.wake, status))
            await self._main_loop(stop, listener, engine, mailbox, sender, bot)

    async def _main_loop(
        self, stop: asyncio.Event, listener: ChainListener, engine: Engine, queue: asyncio.Queue[Mail],
        sender: Sender, bot: BotService | None,
    ) -> None:  # fmt: skip
        try:
            async with asyncio.TaskGroup() as group:
                chain_tasks = [group.create_task(listener.run()), group.create_task(engine.run(queue))]
                sending = group.create_task(sender.run())
                polling = group.create_task(bot.run()) if bot is not None else None
                await stop.wait()
                # Stop taking work first: the bot finishes the updates in hand and confirms them; then the chain
                # stops; then queued alerts and replies get a bounded time to go out.
                if bot is not None and polling is not None:
                    bot.stop()
                    try:
                        async with asyncio.timeout(SHUTDOWN_DRAIN_SECONDS):
                            await asyncio.shield(polling)
                    except TimeoutError:
                        polling.cancel()
                for task in chain_tasks:
                    task.cancel()
                sending.cancel()
        except* BadEndpoint as failures:
            raise StartupError(str(failures.exceptions[0])) from None
        pending = await sender.drain(time.monotonic() + SHUTDOWN_DRAIN_SECONDS)
        log.info("watcher.stopped", unsent=pending)

    async def _check_chain(self, rpc: Rpc) -> None:
        """The node's chain id is the configured one; a node that cannot be reached raises RpcError (retried)."""
        try:
            actual = await rpc.chain_id()
        except RpcError as error:
            if not error.answered:
                raise
            raise StartupError(f"cannot ask the chain its id: {error}") from None
        if actual != self.config.chain.chain_id:
            raise StartupError(f"chain.chain_id is {self.config.chain.chain_id} but the node reports {actual}")

    def _transport(self) -> TelegramTransport | StdoutTransport:
        return transport_for(self.config)

    def _send_limits(self) -> dict[str, float]:
        return send_limits(self.config)


def transport_for(config: Config) -> TelegramTransport | StdoutTransport:
    """Where alerts go: the Bot API when a token is set, standard output otherwise (also for the sender role)."""
    telegram = config.telegram
    token = config.telegram_token()
    if telegram is None or token is None:
        return StdoutTransport()
    return TelegramTransport(token.reveal(), telegram.api_base, telegram.default_chat_id)


def send_limits(config: Config) -> dict[str, float]:
    telegram = config.telegram
    if telegram is None or config.telegram_token() is None:
        # Standard output has no limits, and one print at a time keeps what is printed in order.
        return {"per_chat_interval": 0.0, "messages_per_second": 1000.0, "concurrency": 1}
    return {"messages_per_second": telegram.messages_per_second, "per_chat_interval": telegram.per_chat_interval,
            "concurrency": telegram.concurrent_sends}  # fmt: skip


async def check_bot(transport: TelegramTransport | StdoutTransport) -> None:
    """Asks Telegram who the bot is: a refused token must stop the start, not the first alert."""
    if not isinstance(transport, TelegramTransport):
        return
    try:
        log.info("telegram.ready", bot=await transport.username())
    except TransportBroken as error:
        raise StartupError(f"telegram: {error.reason}") from None
    except RetryLater as error:
        # Telegram unreachable now: alerts wait in the outbox, and the sender keeps trying.
        log.warning("telegram.unreachable", reason=error.reason)


def _reader(config: Config, rpc: Rpc) -> Reader:
    return Reader(
        rpc,
        config.chain.multicall3,
        max_calls=config.chain.calls_per_batch,
        max_gas=config.chain.gas_per_call,
        concurrency=config.chain.read_concurrency,
    )


async def read_once(
    config: Config, address: str, *, detailed: bool = False
) -> list[tuple[Target, AccountReading | ReadError | ReadFailed]]:
    """Reads one address on every configured protocol at the latest block (for `chainwatch check`; `detailed`:
    with each reading's per-asset lines, for the bot's /position and /repay)."""
    rpc = Rpc(config.chain.rpc_endpoints)
    try:
        head = await rpc.head()
        reader = _reader(config, rpc)
        protocols = {p.name: protocol_from_config(p, log_range=config.chain.max_log_range) for p in config.protocols}
        for protocol in protocols.values():
            await protocol.resolve(reader, head.number)
            await protocol.discover(rpc, reader, [address], head.number)
        targets = [Target(protocol=name, account=address) for name in protocols]
        return await read_targets(protocols, reader, targets, head.number, detailed=detailed)
    finally:
        await rpc.close()
