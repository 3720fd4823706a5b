"""The chain listener: one WebSocket, subscribed to `newHeads` and to the logs chainwatch cares about.

Every head and log goes into one queue for the engine, with one promise: a head is queued only after all of
its block's relevant logs. Subscriptions alone do not keep it (a node may send a block's logs after its head),
so a head whose logs bloom may hold a relevant log is completed with `eth_getLogs` by block hash first; a head
whose bloom rules them out costs nothing. When the connection drops, it reconnects with backoff (rotating
through the configured URLs), subscribes again, and backfills with `eth_getLogs` from the last block the
engine finished, so no block's logs are skipped. While on a fallback URL it probes the primary and goes back to
it once it answers (the switch is one more reconnect with backfill). A malformed frame is skipped and counted
(payloads.py); a frame over MAX_FRAME_BYTES closes the connection, and the reconnect's backfill covers it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from chainwatch import metrics
from chainwatch.progress import Progress
from chainwatch.chain import ChainEvent, Head, LogFilter
from chainwatch.listeners.payloads import (
    Malformed,
    MalformedTally,
    Message,
    head_from_notification,
    log_from_notification,
    message_from_frame,
)
from chainwatch.rpc import Rpc, RpcError
from chainwatch.store import BlockRef

log = structlog.get_logger(__name__)


# How far back to replay when the last processed block was reorged away; Monad's subscriptions only report
# finalized blocks, so this covers chains with shallow reorgs.
REORG_REPLAY_BLOCKS = 64
# The largest frame accepted from the node; a larger one closes the connection (1009) and costs a reconnect with
# backfill, which is cheaper than holding a runaway frame in memory.
MAX_FRAME_BYTES = 2**24
_PROBE_TIMEOUT = 10.0


class SubscribeFailed(Exception):
    pass


class Stalled(Exception):
    """The connection is open but has sent nothing for too long: a provider can go quiet without closing."""


class BadEndpoint(Exception):
    """A configured WebSocket URL cannot be used at all; the text names it by position, never by value."""


class Backoff:
    """Delays between reconnects: exponential with jitter, capped; reset after a healthy connection."""

    def __init__(self, first: float = 0.2, cap: float = 15.0) -> None:
        self._first = first
        self._cap = cap
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self._cap, self._first * 2**self._attempt)
        self._attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._attempt = 0


class ChainListener:
    """Feeds `queue` with `Head`s and `Log`s, forever, across reconnects."""

    def __init__(
        self,
        ws_urls: Sequence[str],
        rpc: Rpc,
        queue: asyncio.Queue[ChainEvent],
        *,
        log_filter: Callable[[], LogFilter],
        resume_from: Callable[[], BlockRef | None],
        max_log_range: int,
        stall_seconds: float = 60.0,
        on_subscribed: Callable[[], object] = lambda: None,
        primary_probe_seconds: float = 30.0,
    ) -> None:
        self._urls = list(ws_urls)
        self._rpc = rpc
        self._queue = queue
        self._log_filter = log_filter
        self._resume_from = resume_from
        self._max_log_range = max_log_range
        self._stall_seconds = stall_seconds
        self._on_subscribed = on_subscribed
        self._primary_probe_seconds = primary_probe_seconds
        self._socket: ClientConnection | None = None
        self._planned_reconnect = False  # a reconnect we asked for: same URL (or the primary), no backoff
        self._back_to_primary = False
        self.connections = 0
        self.endpoint: int | None = None  # index in ws_urls of the connection subscribed now
        self.malformed = MalformedTally()
        self._last_head: int | None = None  # the highest head queued, to notice one skipped
        # Blooms are trusted until a log arrives for a block whose head claimed an empty bloom: a node that
        # leaves blooms empty would otherwise have every head look quiet.
        self._trust_blooms = True
        self._empty_bloom_blocks: deque[int] = deque(maxlen=256)
        self._blocks_with_logs: deque[int] = deque(maxlen=256)

    async def run(self) -> None:
        backoff = Backoff()
        index = 0
        left_primary_at: float | None = None  # monotonic, while on a fallback: how long it lasted is logged
        while True:
            await self._connection(index, backoff)
            if self._back_to_primary:
                on_fallback = None if left_primary_at is None else round(time.monotonic() - left_primary_at, 3)
                log.info("listener.back_to_primary", from_endpoint=f"ws_urls[{index}]", seconds_on_fallback=on_fallback)
                index, left_primary_at = 0, None
            elif not self._planned_reconnect:
                following = (index + 1) % len(self._urls)
                if following != index:
                    log.warning("listener.failover", from_endpoint=f"ws_urls[{index}]",
                                to_endpoint=f"ws_urls[{following}]")  # fmt: skip
                index = following
                if index == 0:
                    left_primary_at = None
                elif left_primary_at is None:
                    left_primary_at = time.monotonic()
                await asyncio.sleep(backoff.next_delay())

    async def _connection(self, index: int, backoff: Backoff) -> None:
        """One connection to ws_urls[index], from connect to close; returns when it ends for any expected reason."""
        self._planned_reconnect = self._back_to_primary = False
        probing: asyncio.Task[None] | None = None
        try:
            async with connect(self._urls[index], ping_interval=20, ping_timeout=20, max_size=MAX_FRAME_BYTES) as ws:
                self._socket = ws
                if index != 0:
                    probing = asyncio.create_task(self._probe_primary(ws))
                await self._listen(ws, index, backoff)
        except InvalidURI:
            # A config mistake, not weather: retrying cannot help. The URI itself may hold an API key.
            raise BadEndpoint(f"ws_urls[{index}] is not a valid WebSocket URI") from None
        except (OSError, TimeoutError, WebSocketException, SubscribeFailed, Stalled, RpcError) as error:
            if not self._planned_reconnect:
                log.warning("listener.disconnected", endpoint=f"ws_urls[{index}]", error=_describe(error))
        finally:
            if probing is not None:
                probing.cancel()
            self._socket = None
            self.endpoint = None

    async def reconnect(self) -> None:
        """Drops the connection so the listener subscribes again (with a fresh log filter) and backfills."""
        if self._socket is not None:
            log.info("listener.resubscribing", endpoint=f"ws_urls[{self.endpoint}]")
            self._planned_reconnect = True
            await self._socket.close()

    async def _probe_primary(self, socket: ClientConnection) -> None:
        """While on a fallback: every `primary_probe_seconds`, asks the primary for its chain id on a connection of
        its own; once it answers, closes the fallback so that `run` reconnects (and backfills) on the primary."""
        for attempt in range(1, 2**31):
            await asyncio.sleep(self._primary_probe_seconds)
            if await self._primary_answers():
                log.info("listener.primary_answers", probes=attempt)
                self._back_to_primary = self._planned_reconnect = True
                await socket.close()
                return

    async def _primary_answers(self) -> bool:
        request = msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).decode()
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                async with connect(self._urls[0], ping_interval=None, max_size=MAX_FRAME_BYTES) as probe:
                    await probe.send(request)
                    answer = message_from_frame(await probe.recv())
        except (OSError, TimeoutError, WebSocketException, Malformed):
            return False
        return answer.id == 1 and answer.error is None and isinstance(answer.result, str)

    async def _listen(self, socket: ClientConnection, index: int, backoff: Backoff) -> None:
        # Taken before subscribing: a head that arrives meanwhile must not move the start of the backfill.
        finished = self._resume_from()
        log_filter = self._log_filter()
        subscriptions, early_heads = await self._subscribe(socket, log_filter, f"ws_urls[{index}]")
        self.connections += 1
        if self.connections > 1:
            metrics.RECONNECTS.inc()
        self.endpoint = index
        metrics.WEBSOCKET_ENDPOINT.set(index)
        log.info("listener.subscribed", endpoint=f"ws_urls[{index}]", emitters=len(log_filter.addresses))
        await self._backfill(log_filter, finished)
        for head in early_heads:
            await self._complete(head, log_filter)
        backoff.reset()
        self._on_subscribed()
        loop = asyncio.get_running_loop()
        stalls_at = loop.time() + self._stall_seconds
        while True:
            try:
                # Only a usable frame moves the deadline: a node sending nothing but garbage has stalled too.
                async with asyncio.timeout_at(stalls_at):
                    raw = await socket.recv()
            except TimeoutError:
                raise Stalled(f"nothing usable received for {self._stall_seconds:g} s") from None
            try:
                head = self._route(message_from_frame(raw), subscriptions)
            except Malformed as error:
                self.malformed.note(error, f"ws_urls[{index}]")
                continue
            stalls_at = loop.time() + self._stall_seconds
            if head is not None:
                await self._complete(head, log_filter)

    async def _subscribe(
        self, socket: ClientConnection, log_filter: LogFilter, endpoint: str
    ) -> tuple[dict[str, str], list[Head]]:
        """Subscribes to heads and logs; heads that come before both answers are returned, to follow the backfill."""
        requests = {1: ["newHeads"], 2: ["logs", log_filter.as_rpc()]}
        for request_id, params in requests.items():
            request = {"jsonrpc": "2.0", "id": request_id, "method": "eth_subscribe", "params": params}
            await socket.send(msgspec.json.encode(request).decode())
        subscriptions: dict[str, str] = {}
        early_heads: list[Head] = []
        async with asyncio.timeout(15):
            while len(subscriptions) < len(requests):
                try:
                    message = message_from_frame(await socket.recv())
                    head = None if message.id in requests else self._route(message, subscriptions)
                except Malformed as error:
                    self.malformed.note(error, endpoint)
                    continue
                if message.id not in requests:
                    if head is not None:
                        early_heads.append(head)
                    continue
                if message.error is not None or not isinstance(message.result, str):
                    raise SubscribeFailed(f"eth_subscribe {requests[message.id][0]} refused: {message.error}")
                subscriptions[message.result] = requests[message.id][0]
        return subscriptions, early_heads

    async def _backfill(self, log_filter: LogFilter, finished: BlockRef | None) -> None:
        """Replays logs since the last finished block, that block included (its logs are re-checked, cheaply).

        If that block is no longer on the chain (a reorg while we were away), replays from further back. Each
        range is followed by its last head, so a backfill cut short still moves the engine forward.
        """
        if finished is None:
            return
        start = finished.number
        if (await self._rpc.head(finished.number)).hash != finished.hash:
            start = max(0, finished.number - REORG_REPLAY_BLOCKS)
            log.warning("listener.reorg_detected", block=finished.number, replay_from=start)
        head = await self._rpc.head()
        progress = Progress("backfill", head.number + 1 - start)
        for first in range(start, head.number + 1, self._max_log_range):
            last = min(first + self._max_log_range - 1, head.number)
            for item in await self._rpc.logs(log_filter, first, last):
                self._queue.put_nowait(item)
            self._queue.put_nowait(head if last == head.number else await self._rpc.head(last))
            progress.advance(last + 1 - first)
        self._last_head = head.number
        metrics.BACKFILLED_BLOCKS.inc(max(0, head.number - start + 1))
        log.info("listener.backfilled", from_block=start, to_block=head.number)

    def _route(self, message: Message, subscriptions: dict[str, str]) -> Head | None:
        """Queues a log at once; returns a head, which must wait until its block's logs are complete."""
        if message.params is None:
            return None
        kind = subscriptions.get(message.params.subscription)
        if kind == "newHeads":
            return head_from_notification(message.params.result)
        if kind == "logs":
            item = log_from_notification(message.params.result)
            self._blocks_with_logs.append(item.block_number)
            if item.block_number in self._empty_bloom_blocks:
                self._distrust_blooms(item.block_number)
            self._queue.put_nowait(item)
        return None

    def _distrust_blooms(self, block: int) -> None:
        if self._trust_blooms:
            self._trust_blooms = False
            log.warning("listener.blooms_unreliable", block=block)

    async def _complete(self, head: Head, log_filter: LogFilter) -> None:
        await self._fill_gap_below(head, log_filter)
        if not any(head.logs_bloom):
            self._empty_bloom_blocks.append(head.number)
            if head.number in self._blocks_with_logs:
                self._distrust_blooms(head.number)
        if not self._trust_blooms or log_filter.may_match_block(head):
            try:
                found = await self._rpc.block_logs(log_filter, head.hash)
            except RpcError as error:
                # Some providers refuse the blockHash filter (EIP-234); the same block by number serves as well.
                log.warning("listener.block_hash_logs_refused", block=head.number, error=str(error))
                found = await self._rpc.logs(log_filter, head.number, head.number)
            for item in found:
                self._queue.put_nowait(item)  # the engine drops the ones the subscription already brought
        self._queue.put_nowait(head)
        self._last_head = head.number if self._last_head is None else max(self._last_head, head.number)

    async def _fill_gap_below(self, head: Head, log_filter: LogFilter) -> None:
        """Fetches the logs of blocks whose heads never came (skipped as malformed, or not sent) before `head`."""
        if self._last_head is None or head.number <= self._last_head + 1:
            return
        first_missing = self._last_head + 1
        for first in range(first_missing, head.number, self._max_log_range):
            last = min(first + self._max_log_range - 1, head.number - 1)
            for item in await self._rpc.logs(log_filter, first, last):
                self._queue.put_nowait(item)
        log.info("listener.gap_filled", from_block=first_missing, to_block=head.number - 1)


def _describe(error: BaseException) -> str:
    # websockets' handshake errors can quote the URL (and its API key); the type and status are enough.
    if isinstance(error, InvalidHandshake):
        return type(error).__name__
    return f"{type(error).__name__}: {error}" if not isinstance(error, OSError) else type(error).__name__
