"""The bot role: one active getUpdates poller per bot token, with no engine in its process.

The handlers are the one-process bot's (`BotService`); only their link to the chain differs (`DirectChain`):
- a change of watches, thresholds or mutes is committed by the PostgreSQL store together with a NOTIFY on
  WATCHES_CHANNEL (see `postgres_chat_settings`), which is how it reaches the active ingest;
- a read asked for (/check, an address alone, the reading shown after /add) reads the chain directly, at the head;
- replies go to the outbox (its rows NOTIFY OUTBOX_CHANNEL), and the sender role sends them.
"""

from __future__ import annotations

import asyncio
import structlog

from chainwatch.alerts.directory import Directory, build_directory
from chainwatch.alerts.telegram import TelegramTransport
from chainwatch.app import StartupError, check_bot, read_once, transport_for
from chainwatch.bot.context import ENGINE_DEADLINE, BotContext, EngineBusy
from chainwatch.bot.service import FINISH_DEADLINE, BotService
from chainwatch.config import Config
from chainwatch.leadership import Leadership
from chainwatch.protocols.base import ReadError
from chainwatch.read_pass import Outcome
from chainwatch.reader import ReadFailed
from chainwatch.roles import RoleContext, RoleError, token_duty
from chainwatch.roles.duty import hold_and_run
from chainwatch.rpc import RpcError
from chainwatch.storage_port import StorePort

log = structlog.get_logger(__name__)

STATUS_REFRESH_SECONDS = 5.0


class DirectChain:
    """The bot's ChainSide without an engine: reads at the head through the configured RPC endpoints."""

    def __init__(self, config: Config) -> None:
        self._config = config

    async def watches_changed(self, accounts: tuple[str, ...]) -> list[Outcome]:
        # Already committed and notified by the store in the same transaction: what is left is the reading.
        return await self.read_now(accounts, False) if accounts else []

    async def read_now(self, accounts: tuple[str, ...], detailed: bool) -> list[Outcome]:
        try:
            async with asyncio.timeout(ENGINE_DEADLINE):
                outcomes: list[Outcome] = []
                for account in accounts:
                    outcomes += await read_once(self._config, account, detailed=detailed)
                return outcomes
        except (TimeoutError, RpcError, ReadFailed, ReadError, OSError) as error:
            log.warning("bot.read_failed", reason=type(error).__name__)
            raise EngineBusy() from None


class StatusFacts:
    """/status without an engine: the stored cursor and the directory, refreshed every few seconds."""

    def __init__(self, config: Config, store: StorePort) -> None:
        self._config = config
        self._store = store
        self._block: int | None = None
        self._directory: Directory | None = None

    async def refresh_forever(self) -> None:
        while True:
            try:
                cursor = await self._store.cursor()
                self._block = None if cursor is None else cursor.number
                self._directory = build_directory(self._config, await self._store.chats.setup())
            except OSError as error:
                log.warning("bot.status_unavailable", reason=type(error).__name__)
            await asyncio.sleep(STATUS_REFRESH_SECONDS)  # a period, not synchronisation

    def __call__(self) -> dict[str, object]:
        directory = self._directory
        return {
            "processed_block": self._block,
            "processed_at": None,
            "positions": 0 if directory is None else len(directory.targets()),
            "positions_of": lambda chat: 0 if directory is None else len(directory.subscriptions_of(chat)),
        }


async def run(context: RoleContext) -> None:
    if context.config.telegram_token() is None:
        raise RoleError("--role bot: needs [telegram] with a token")
    await hold_and_run(context, "bot", token_duty("bot", context.config), lambda held: _poll(context, held))


async def _poll(context: RoleContext, held: Leadership) -> None:
    config = context.config
    transport = transport_for(config)
    assert isinstance(transport, TelegramTransport)  # a token is set (checked in run)
    async with transport:
        try:
            await check_bot(transport)
        except StartupError as error:
            raise RoleError(str(error)) from None
        status = StatusFacts(config, context.store)
        # Replies go by the outbox; its NOTIFY wakes the sender role, so there is nothing to wake here.
        ctx = BotContext(config, context.store, DirectChain(config), lambda: None, status)  # type: ignore[arg-type]
        service = BotService(transport.bot, ctx)
        refreshing = asyncio.create_task(status.refresh_forever())
        polling = asyncio.create_task(service.run())
        stopping = asyncio.create_task(context.stop.wait())
        try:
            await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if polling.done():
                polling.result()
                return
            # Stop taking updates, finish the batch in hand and confirm it, as the one-process bot does.
            service.stop()
            try:
                async with asyncio.timeout(FINISH_DEADLINE + 1):
                    await asyncio.shield(polling)
            except TimeoutError:
                polling.cancel()
        finally:
            stopping.cancel()
            refreshing.cancel()
            if not polling.done():
                polling.cancel()  # the lock was lost: not one more update handled here
            await asyncio.gather(polling, refreshing, return_exceptions=True)

