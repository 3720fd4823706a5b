"""Batched, block-pinned reads: many view calls as a few `aggregate3` eth_calls, run concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from eth_abi.exceptions import DecodingError

from chainwatch.multicall import (
    Call,
    CallResult,
    chunked,
    decode_aggregate3,
    encode_aggregate3,
)
from chainwatch.rpc import Rpc, RpcError

log = structlog.get_logger(__name__)


class ReadFailed(Exception):
    """A batch of reads could not be made at a block; the positions it covered are still unknown."""

    def __init__(self, block: int, calls: int, reason: str) -> None:
        super().__init__(f"reading {calls} calls at block {block} failed: {reason}")
        self.block = block
        self.calls = calls


class Reader:
    def __init__(
        self,
        rpc: Rpc,
        multicall: str,
        *,
        max_calls: int = 200,
        max_gas: int = 20_000_000,
        concurrency: int = 4,
    ) -> None:
        self._rpc = rpc
        self._multicall = multicall
        self._max_calls = max_calls
        self._max_gas = max_gas
        self._limit = asyncio.Semaphore(concurrency)

    async def read(self, calls: Sequence[Call], block: int) -> list[CallResult]:
        """Results in call order, every call made at `block`; raises ReadFailed rather than guess. A call that makes
        every eth_call holding it fail (a gas-burning view) reads as a failed call, as if it had reverted."""
        results = await self.read_what_can_be_read(calls, block)
        if any(result is None for result in results):
            raise ReadFailed(block, len(calls), "part of the batch could not be read")
        return results  # type: ignore[return-value]

    async def read_what_can_be_read(self, calls: Sequence[Call], block: int) -> list[CallResult | None]:
        """Like `read`, but a chunk that could not be read costs only its own calls (None in their places), not
        the whole pass: with thousands of positions, one rate-limited request must not leave every one unread.

        A chunk the node refuses to execute (over its gas cap, a view that burns all gas) is split and retried
        until the failing call is alone; that call reads as failed and the rest of the chunk is read. Raises
        ReadFailed only when nothing at all could be read."""
        if not calls:
            return []
        chunks = list(chunked(calls, max_calls=self._max_calls, max_gas=self._max_gas))
        attempt = _Pass(self, block)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._read_isolating(chunk, attempt)) for chunk in chunks]
        results = [result for task in tasks for result in task.result()]
        if attempt.reasons and all(result is None for result in results):
            raise ReadFailed(block, len(calls), attempt.reasons[0])
        return results

    async def _read_isolating(self, chunk: Sequence[Call], attempt: _Pass) -> list[CallResult | None]:
        try:
            return await self._read_chunk(chunk, attempt.block)
        except RpcError as error:
            # Only the node's own refusal is split: a transport failure (a 429) would just cost more requests.
            if not error.answered or not await attempt.block_readable():
                attempt.reasons.append(str(error))
                return [None] * len(chunk)
            halves = _halves(chunk)
            if halves is None:
                log.warning("reader.call_isolated", block=attempt.block, target=chunk[0].target, calls=len(chunk),
                            error=str(error))  # fmt: skip
                return [CallResult(success=False, data=b"")] * len(chunk)
            first, second = await asyncio.gather(*(self._read_isolating(half, attempt) for half in halves))
            return first + second
        except (ValueError, DecodingError) as error:
            attempt.reasons.append(str(error))
            return [None] * len(chunk)

    async def _read_chunk(self, chunk: Sequence[Call], block: int) -> list[CallResult]:
        async with self._limit:
            raw = await self._rpc.call(self._multicall, encode_aggregate3(chunk), block)
        return decode_aggregate3(raw, len(chunk))


class _Pass:
    """One read pass: the reasons chunks could not be read, and (asked once, only if a chunk was refused)
    whether the node executes anything at all at the block: if an empty aggregate3 fails too, the block is
    the trouble (pruned state, not yet seen), and splitting would only multiply the failing requests."""

    def __init__(self, reader: Reader, block: int) -> None:
        self.block = block
        self.reasons: list[str] = []
        self._reader = reader
        self._probe: asyncio.Task[bool] | None = None

    async def block_readable(self) -> bool:
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._executes_empty_batch())
        return await self._probe

    async def _executes_empty_batch(self) -> bool:
        try:
            await self._reader._read_chunk([], self.block)
        except (RpcError, ValueError, DecodingError):
            return False
        return True


def _halves(chunk: Sequence[Call]) -> tuple[Sequence[Call], Sequence[Call]] | None:
    """The chunk cut in two near its middle, never right after a call that must keep with the next; None when
    it cannot be cut (one call, or one group kept together)."""
    cuts = [i for i in range(1, len(chunk)) if not chunk[i - 1].keep_with_next]
    if not cuts:
        return None
    cut = min(cuts, key=lambda i: abs(2 * i - len(chunk)))
    return chunk[:cut], chunk[cut:]
