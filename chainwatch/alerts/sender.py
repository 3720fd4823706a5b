"""The outbox drainer: sends queued alerts most urgent first within Telegram's limits, and records each outcome.

The sender only talks to a `Transport`; what went wrong comes back as one of three error types, which decide
whether the message is retried (`RetryLater`), given up (`Undeliverable`) or the sender stops (`TransportBroken`).
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import NoReturn, Protocol

import structlog

from chainwatch import metrics
from chainwatch.alerts.ratelimit import RateLimiter
from chainwatch.store import Keyboard, OutboxMessage, Store

log = structlog.get_logger(__name__)


class Scope(enum.Enum):
    """What a `RetryLater` holds back."""

    CHAT = "chat"  # the API throttled this chat (429 on a send): only its messages wait
    BOT = "bot"  # the API throttled the whole bot (429 with no chat): everything waits `after`
    LINK = "link"  # network or server trouble: everything backs off exponentially, `after` at least


class RetryLater(Exception):
    """The message was not delivered but may be later; `after` is the least wait in seconds."""

    def __init__(self, after: float, reason: str, *, scope: Scope = Scope.LINK) -> None:
        super().__init__(f"retry in {after:g} s ({scope.value}): {reason}")
        self.after = after
        self.reason = reason
        self.scope = scope


class Undeliverable(Exception):
    """This message can never be delivered as it is (bot blocked, chat gone, request rejected).

    `chat_gone`: no message to this chat can be delivered until it writes to the bot again."""

    def __init__(self, reason: str, *, chat_gone: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.chat_gone = chat_gone


class TransportBroken(Exception):
    """No message can be delivered until an operator fixes the configuration (bad token, wrong API base)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transport(Protocol):
    async def send(self, chat_id: int | None, text: str, buttons: Keyboard = ()) -> None:
        """Delivers `text` (to the default chat when `chat_id` is None) or raises one of the errors above."""
        ...


# The limiter's key for messages without a chat: the transport's default chat.
_DEFAULT_CHAT = "default"


class Sender:
    """Drains the outbox through a transport: `run()` forever, `drain(deadline)` at shutdown, `wake()` on new rows.

    Up to `concurrency` sends are in flight at once, each to a different chat: Telegram answers a send in
    100-200 ms, so one at a time would cap the bot far below its ~30 messages/s. A chat never has two in
    flight, so per chat the order sent is the order picked. `clock` is the wall clock the store's timestamps
    use; `monotonic` paces the limits and deadlines.

    Deliveries are marked sent in one transaction per `commit_every` seconds while sends are still running
    (at once when none is): a commit per answer was most of a burst's disk and CPU. The price is that window:
    a crash inside it sends those messages again after a restart.
    """

    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        messages_per_second: float = 25,
        per_chat_interval: float = 1.0,
        concurrency: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        batch: int = 500,
        commit_every: float = 0.1,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_chat_gone: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._store = store
        self._on_chat_gone = on_chat_gone
        self._transport = transport
        self._limiter = RateLimiter(per_second=messages_per_second, per_chat_interval=per_chat_interval)
        self._concurrency = concurrency
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._batch = batch
        self._commit_every = commit_every
        self._clock = clock
        self._monotonic = monotonic
        self._wake = asyncio.Event()
        # run() and drain() may overlap at shutdown; one pick at a time keeps a row from being started twice.
        self._turn = asyncio.Lock()
        # Chat -> its send in flight. A chat stays here until its outcome is committed: picked again before,
        # the store would still call the message unsent and it would go twice.
        self._in_flight: dict[Hashable, asyncio.Task[None]] = {}
        # Delivered but not yet marked sent: committed together, one transaction for a burst of answers. Their
        # chats stay in `_in_flight`, but their slots are free: only the sends still running count.
        self._delivered: list[tuple[OutboxMessage, float]] = []
        self._first_delivered_at = 0.0  # monotonic; when the oldest of `_delivered` was
        self._send_seconds: dict[int, float] = {}  # message id -> its request's time, logged when committed
        self._link_failures = 0
        self._crashed: list[tuple[Hashable, asyncio.Task[None]]] = []  # sends ended by an unexpected error
        # The last due_messages answer not yet started from, and whether it may still be used: a burst of 1,000
        # alerts to 1,000 chats is then one query per batch, not one per send (the query ranks every pending row).
        # Anything that may change what is due (new messages, a deferred or failed send) drops it.
        self._picks: list[OutboxMessage] = []
        self._picks_valid = False
        # Set whenever a message leaves the outbox for good (sent or given up): lets others wait for quiet.
        self.settled = asyncio.Event()

    def wake(self) -> None:
        """Tells the sender the outbox has new messages; call it after committing them."""
        self._picks_valid = False
        self._wake.set()

    async def run(self) -> NoReturn:
        """Sends due messages forever, sleeping until woken, a send ends, or the next message or limit allows."""
        try:
            while True:
                if (wait := await self._dispatch()) > 0:
                    await self._wait(wait)
        finally:
            await _finish_even_if_cancelled(self._settle_in_flight())

    async def drain(self, deadline: float) -> int:
        """Sends until the outbox is empty or `deadline` (on the monotonic clock) passes; returns messages left.

        Sends already in flight at the deadline are waited for and recorded: one that reached Telegram and
        were not marked sent would go again after a restart."""
        try:
            while True:
                wait = await self._dispatch()
                if not self._in_flight and await self._store.pending_count() == 0:
                    return 0
                left = deadline - self._monotonic()
                if left <= 0 or (not self._in_flight and wait > left):
                    break  # nothing more can go before the deadline: stop now rather than at it
                if wait > 0:
                    await self._wait(min(wait, left))
        finally:
            await _finish_even_if_cancelled(self._settle_in_flight())
        return await self._store.pending_count()

    async def _dispatch(self) -> float:
        """Records finished sends and starts what may go now, most urgent first; returns the seconds until it is
        worth calling again: until a message, a limit or the commit allows (a send ending wakes the sender sooner)."""
        async with self._turn:
            self._wake.clear()
            if (commit_in := self._until_commit()) <= 0:
                await _finish_even_if_cancelled(self._commit_delivered())
                commit_in = math.inf
            self._raise_crashed_sends()
            if self._running() >= self._concurrency:
                return commit_in  # a send ending wakes the sender sooner
            if (held := self._limiter.bot_delay(self._monotonic())) > 0:
                # Nothing may go before then, whichever message it is: no scan of the picks, no query.
                return min(held, commit_in)
            wall = self._clock()
            if self._picks_valid and self._start_due(self._picks) is None:
                return self._after_starting(commit_in)  # started from the last answer: no query
            # One message per chat, most urgent first. Chats in flight are dropped at once: such a pick may be
            # that very message (unsent until committed), and kept it could be started again after the commit.
            picks = await self._store.due_messages(wall, self._batch + len(self._in_flight))
            self._picks = [m for m in picks if _chat_key(m) not in self._in_flight]
            self._picks_valid = True
            held = self._start_due(self._picks)
            if held is None:
                return self._after_starting(commit_in)
            return min(held, commit_in, await self._until_next_due(wall))

    def _after_starting(self, commit_in: float) -> float:
        # With the slots full or the bucket empty, a turn now would only find that out: wait for the cause to pass.
        if self._running() >= self._concurrency:
            return commit_in
        return min(self._limiter.bot_delay(self._monotonic()), commit_in)

    def _running(self) -> int:
        """Sends whose request has not ended (delivered ones wait in `_delivered` only for their commit)."""
        return len(self._in_flight) - len(self._delivered)

    def _until_commit(self) -> float:
        """Seconds until the deliveries must be committed: 0 once `commit_every` has passed since the oldest, or
        at once when no send is running (no answer is coming to share the transaction); inf with none."""
        if not self._delivered:
            return math.inf
        if self._running() == 0:
            return 0.0
        return max(0.0, self._first_delivered_at + self._commit_every - self._monotonic())

    def _start_due(self, picks: list[OutboxMessage]) -> float | None:
        """Starts what may go now from `picks` (most urgent first), removing it; None if anything started, else
        the seconds until the limiter lets one of them go (inf if none can start at all).

        Once the slots are full or the bot-wide limit holds, the rest is left as it is, unscanned: a wake per
        send ending would otherwise walk the whole batch each time (quadratic in a burst)."""
        now = self._monotonic()
        held, started, kept, scanned = math.inf, False, [], len(picks)
        for index, message in enumerate(picks):
            if self._running() >= self._concurrency:
                scanned = index
                break
            if (wait := self._limiter.bot_delay(now)) > 0:
                held, scanned = min(held, wait), index
                break
            chat = _chat_key(message)
            if chat in self._in_flight:
                continue  # its chat's next message is picked again once this send is committed
            delay = self._limiter.delay_for(chat, now)
            if delay == 0:
                self._start(chat, message, now)
                started = True
            else:
                held = min(held, delay)
                kept.append(message)
        picks[:scanned] = kept
        return None if started else held

    def _start(self, chat: Hashable, message: OutboxMessage, now: float) -> None:
        # The attempt counts against the limits whatever its outcome: Telegram counted it too.
        self._limiter.record(chat, now)
        # Not a child of run(): cancelling run() must not cut a send short (see `_finish_even_if_cancelled`).
        task = asyncio.ensure_future(self._deliver(chat, message))
        self._in_flight[chat] = task
        task.add_done_callback(lambda ended: self._ended(chat, ended))

    def _ended(self, chat: Hashable, task: asyncio.Task[None]) -> None:
        # A send that raised something other than the three transport errors (the store failing) is a bug or a
        # broken disk: noted here, raised by the loop (`_raise_crashed_sends`), rather than its chat held forever.
        if task.cancelled() or task.exception() is not None:
            self._crashed.append((chat, task))
        # A finished send frees a slot (and maybe its chat): the loop picks again at once.
        self._wake.set()

    async def _settle_in_flight(self) -> None:
        """Waits for every send in flight and commits their outcomes (at shutdown, or when run() ends)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))
            await self._commit_delivered()
            self._raise_crashed_sends()
        await self._commit_delivered()

    async def _commit_delivered(self) -> None:
        self._raise_crashed_sends()
        if not self._delivered:
            return
        delivered, self._delivered = self._delivered, []
        await self._store.mark_sent_many([(message.id, at) for message, at in delivered])
        total, longest = 0.0, 0.0
        send_stage = metrics.PASS_STAGE_SECONDS.labels("send")
        for message, _ in delivered:
            self._in_flight.pop(_chat_key(message), None)
            # The request's own time (its stage of the block's latency): what a slow Bot API path shows up in.
            seconds = self._send_seconds.pop(message.id, 0.0)
            total, longest = total + seconds, max(longest, seconds)
            send_stage.observe(seconds)
            # Per message only at debug: at a thousand alerts a block, a line each cost more than the commit.
            log.debug("alert.sent", send_ms=round(1000 * seconds, 3), **_facts(message))
        metrics.TELEGRAM_SENDS.labels("sent").inc(len(delivered))
        log.info("alerts.sent", count=len(delivered), block=max(m.block for m, _ in delivered),
                 send_ms=round(1000 * total, 3), send_ms_max=round(1000 * longest, 3))  # fmt: skip
        self.settled.set()

    def _raise_crashed_sends(self) -> None:
        # Stops the sender loudly on a crashed send (see `_ended`); a cancelled one only frees its chat.
        while self._crashed:
            chat, task = self._crashed.pop()
            if self._in_flight.get(chat) is task:
                del self._in_flight[chat]
            if not task.cancelled():
                raise task.exception()  # type: ignore[misc]

    async def _until_next_due(self, wall: float) -> float:
        soonest = await self._store.next_attempt_after(wall)
        return math.inf if soonest is None else max(0.0, soonest - wall)

    async def _wait(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives as the
        # awaited event is set (a send finishing sets it), and run() then never stops: a shutdown that hangs.
        try:
            async with asyncio.timeout(None if math.isinf(timeout) else timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _deliver(self, chat: Hashable, message: OutboxMessage) -> None:
        """One send and, unless it succeeded (committed in a batch later), its outcome; frees the chat after."""
        started = time.perf_counter()
        try:
            await self._transport.send(message.chat_id, message.text, message.buttons)
        except RetryLater as e:
            wait = self._hold_back(chat, e)
            until = self._clock() + wait
            await self._store.defer(message.id, until, e.reason)
            self._picks_valid = False
            self._in_flight.pop(chat, None)
            metrics.TELEGRAM_SENDS.labels("retry_later").inc()
            log.warning("alert.deferred", retry_in=round(wait, 3), scope=e.scope.value, reason=e.reason,
                        **_facts(message))  # fmt: skip
        except Undeliverable as e:
            self._link_failures = 0
            await self._store.mark_failed(message.id, self._clock(), e.reason)
            self._picks_valid = False
            self._in_flight.pop(chat, None)
            metrics.TELEGRAM_SENDS.labels("undeliverable").inc()
            self.settled.set()
            log.error("alert.failed", reason=e.reason, **_facts(message))
            if e.chat_gone and message.chat_id is not None and self._on_chat_gone is not None:
                await self._on_chat_gone(message.chat_id)
        else:
            self._link_failures = 0
            self._send_seconds[message.id] = time.perf_counter() - started
            # Observed on the answer, not at the commit: the linger before it is no part of the alert's latency.
            if message.kind != "REPLY" and (latency := metrics.CHAIN.since(message.block)) is not None:
                metrics.BLOCK_TO_SENT.observe(latency)
            if not self._delivered:
                self._first_delivered_at = self._monotonic()
            self._delivered.append((message, self._clock()))

    def _hold_back(self, chat: Hashable, error: RetryLater) -> float:
        """Pauses what `error` says must wait and returns the message's wait in seconds."""
        now = self._monotonic()
        match error.scope:
            case Scope.CHAT:
                self._limiter.pause(chat, now + error.after)
                return error.after
            case Scope.BOT:
                self._limiter.pause(None, now + error.after)
                return error.after
            case Scope.LINK:
                self._link_failures += 1
                backoff = self._backoff_base * 2 ** min(self._link_failures - 1, 30)
                wait = max(error.after, min(self._backoff_cap, backoff))
                # The link is shared: trying the next message at once would only fail the same way.
                self._limiter.pause(None, now + wait)
                return wait


def _chat_key(message: OutboxMessage) -> Hashable:
    return _DEFAULT_CHAT if message.chat_id is None else message.chat_id


def _facts(message: OutboxMessage) -> dict[str, object]:
    return dict(
        message_id=message.id,
        chat_id=message.chat_id,
        kind=message.kind,
        position=message.position,
        block=message.block,
        attempts=message.attempts + 1,
    )


async def _finish_even_if_cancelled(delivery: Coroutine[object, object, None]) -> None:
    """Runs a delivery to its end even when the caller is cancelled mid-send, then re-raises the cancellation.

    A message that reached Telegram but was not marked sent would be sent again after a restart: a doubled alert.
    """
    task = asyncio.ensure_future(delivery)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
