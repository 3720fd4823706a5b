"""Start-up retries: what is worth retrying, and a stop that cuts the retrying short."""

from __future__ import annotations

import asyncio

import pytest

from chainwatch.protocols.base import ReadError
from chainwatch.reader import ReadFailed
from chainwatch.rpc import RpcError
from chainwatch.startup import StopRequested, is_transient, retry_until_up


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (RpcError("eth_chainId", "http_urls[0]: HTTP 429"), True),
        (ReadFailed(7, 3, "http_urls[0]: HTTP 503"), True),
        (RpcError("eth_call", "http_urls[0]: execution reverted", answered=True), False),
        (ReadError("PoolAddressesProvider.getPool() reverted"), False),
        (ValueError("a bug"), False),
    ],
    ids=["unanswered", "read-failed", "answered", "read-error", "other"],
)
def test_only_unanswered_failures_are_transient(error: Exception, transient: bool) -> None:
    """Retrying helps when nothing answered; the node's answer and a protocol's ReadError are final."""
    assert is_transient(error) is transient


async def test_retries_until_the_attempt_succeeds() -> None:
    """Two transient failures, then the result: retry_until_up returns it."""
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RpcError("eth_chainId", "http_urls[0]: HTTP 503")
        return "up"

    async with asyncio.timeout(20):
        assert await retry_until_up("chain_id", flaky, asyncio.Event()) == "up"
    assert attempts == 3


async def test_a_final_error_is_raised_at_once() -> None:
    """A failure retrying cannot fix is raised on the first attempt."""
    attempts = 0

    async def reverting() -> None:
        nonlocal attempts
        attempts += 1
        raise RpcError("eth_call", "http_urls[0]: execution reverted", answered=True)

    with pytest.raises(RpcError):
        await retry_until_up("first_read", reverting, asyncio.Event())
    assert attempts == 1


async def test_a_stop_ends_the_wait_between_attempts() -> None:
    """A stop set while waiting to retry raises StopRequested instead of trying again."""
    stop = asyncio.Event()
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        asyncio.get_running_loop().call_soon(stop.set)  # the stop arrives during the wait that follows
        raise RpcError("eth_chainId", "http_urls[0]: ClientConnectorError")

    async with asyncio.timeout(20):
        with pytest.raises(StopRequested):
            await retry_until_up("chain_id", down, stop)
    assert attempts == 1


async def test_a_stop_cancels_an_attempt_in_flight() -> None:
    """A stop set while an attempt hangs cancels it and raises StopRequested."""
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def hanging() -> None:
        stop.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with asyncio.timeout(20):
        with pytest.raises(StopRequested):
            await retry_until_up("chain_id", hanging, stop)
    assert cancelled.is_set()
