"""Start-up steps that wait out a chain that is not reachable yet, and stop at once when asked to.

A node that is down, a provider answering 429 or 5xx: retried with backoff and a log line per attempt, since an
operator's supervisor restarting chainwatch in a loop would only do the same, less politely. What retrying cannot
fix (a wrong chain id, contracts that revert: the node's own answer) is raised at once, for the CLI to report.
tenacity runs the loop: exponential backoff with jitter, a predicate for what to retry, a hook for the log line,
and a pluggable sleep, which is how a stop request cuts a wait short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from chainwatch.reader import ReadFailed
from chainwatch.rpc import RpcError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The first wait, and the longest: long enough not to add load to a provider in trouble, short enough that the
# watcher is up within a minute of the node.
FIRST_WAIT_SECONDS = 1.0
MAX_WAIT_SECONDS = 60.0


class StopRequested(Exception):
    """A stop (SIGTERM, SIGINT) came while start-up was still waiting for the chain."""


def is_transient(error: BaseException) -> bool:
    """Whether asking again may succeed: a request no endpoint answered, a read whose requests were not answered.
    A JSON-RPC error the node answered (a revert) and a protocol's ReadError are the chain's final word."""
    return isinstance(error, ReadFailed) or (isinstance(error, RpcError) and not error.answered)


async def retry_until_up(step: str, attempt: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """`attempt()`'s result, retried while it fails transiently; raises StopRequested as soon as `stop` is set."""

    async def sleep(seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await stop.wait()
        except TimeoutError:
            return
        raise StopRequested

    def announce(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("watcher.startup_retry", step=step, attempt=state.attempt_number, error=str(error),
                    retry_in_seconds=round(wait, 1))  # fmt: skip

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(initial=FIRST_WAIT_SECONDS, max=MAX_WAIT_SECONDS),
        sleep=sleep,
        before_sleep=announce,
        reraise=True,
    )
    return await retrying(_unless_stopped, attempt, stop)


async def _unless_stopped(attempt: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """`attempt()`, given up (cancelled) the moment `stop` is set: a request may wait a minute on a dead node."""
    if stop.is_set():
        raise StopRequested
    work = asyncio.ensure_future(attempt())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            raise StopRequested
    return work.result()
