"""Batched, block-pinned reads: many view calls as a few `aggregate3` eth_calls, run concurrently.

The size of those calls adapts: an aggregate3 the node refuses for its size (out of gas, a response too large,
a timeout) is split and retried, and the reader remembers the largest size that then worked, starting from it
next time and growing back slowly after successes. The Rpc fails over between endpoints on its own, so what is
learnt is per reader, not per endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from eth_abi.exceptions import DecodingError

from chainwatch import metrics
from chainwatch.multicall import (
    Call,
    CallResult,
    chunked,
    decode_aggregate3,
    encode_aggregate3,
)
from chainwatch.rpc import Rpc, RpcError
from chainwatch.stage_timings import TIMINGS

log = structlog.get_logger(__name__)

# Full-size chunks read in a row before the learnt limit grows by an eighth: slow, so a limit found by a refusal
# is not lost to the next burst of small, cheap reads.
GROW_AFTER_SUCCESSES = 20


class BatchLimit:
    """How many calls an aggregate3 may hold: the configured ceiling, lowered by refusals for size, regrown slowly."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.calls = ceiling
        self._full_successes = 0
        self._proven = 0  # the largest chunk read whole since the last refusal: where a failed growth falls back to
        metrics.READ_BATCH_LIMIT.set(ceiling)

    def refused(self, size: int, largest_read: int) -> None:
        """A chunk of `size` calls was refused for its size; its parts of up to `largest_read` calls were read."""
        known_good = max(largest_read, self._proven if self._proven < size else 0)
        lowered = max(1, min(self.calls, known_good, size - 1))
        self._full_successes = 0
        self._proven = lowered
        if lowered < self.calls:
            log.warning("reader.batch_limit_lowered", refused_calls=size, limit=lowered, ceiling=self.ceiling)
            self.calls = lowered
            metrics.READ_BATCH_LIMIT.set(lowered)

    def read(self, size: int) -> None:
        self._proven = max(self._proven, size)
        if size < self.calls or self.calls >= self.ceiling:
            return
        self._full_successes += 1
        if self._full_successes >= GROW_AFTER_SUCCESSES:
            self._full_successes = 0
            self.calls = min(self.ceiling, self.calls + max(1, self.calls // 8))
            log.info("reader.batch_limit_raised", limit=self.calls, ceiling=self.ceiling)
            metrics.READ_BATCH_LIMIT.set(self.calls)


@dataclass
class _Chunked:
    """What reading one chunk (and the parts it was split into) gave: results, the largest part read whole, and
    whether a refusal came down to one call (a gas-burning view) rather than to the chunk's size."""

    results: list[CallResult | None]
    largest_read: int = 0
    call_to_blame: bool = False


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
        self.limit = BatchLimit(max_calls)
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
        chunks = list(chunked(calls, max_calls=self.limit.calls, max_gas=self._max_gas))
        attempt = _Pass(self, block)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._read_isolating(chunk, attempt)) for chunk in chunks]
        results = [result for task in tasks for result in task.result().results]
        if attempt.reasons and all(result is None for result in results):
            raise ReadFailed(block, len(calls), attempt.reasons[0])
        return results

    async def _read_isolating(self, chunk: Sequence[Call], attempt: _Pass) -> _Chunked:
        try:
            read = _Chunked(await self._read_chunk(chunk, attempt.block), largest_read=len(chunk))
            self.limit.read(len(chunk))
            return read
        except RpcError as error:
            # Only a refusal that a smaller request can avoid is split: a rate limit (429) would just cost more.
            if not _refused_for_size(error) or not await attempt.block_readable():
                attempt.reasons.append(str(error))
                return _Chunked([None] * len(chunk))
            halves = _halves(chunk)
            if halves is None:
                if not error.answered:
                    attempt.reasons.append(str(error))  # a call that times out alone is unknown, not reverted
                    return _Chunked([None] * len(chunk), call_to_blame=True)
                log.warning("reader.call_isolated", block=attempt.block, target=chunk[0].target, calls=len(chunk),
                            error=str(error))  # fmt: skip
                return _Chunked([CallResult(success=False, data=b"")] * len(chunk), call_to_blame=True)
            first, second = await asyncio.gather(*(self._read_isolating(half, attempt) for half in halves))
            if not (first.call_to_blame or second.call_to_blame):
                self.limit.refused(len(chunk), max(first.largest_read, second.largest_read))
            return _Chunked(first.results + second.results, call_to_blame=first.call_to_blame or second.call_to_blame,
                            largest_read=max(first.largest_read, second.largest_read))  # fmt: skip
        except (ValueError, DecodingError) as error:
            attempt.reasons.append(str(error))
            return _Chunked([None] * len(chunk))

    async def _read_chunk(self, chunk: Sequence[Call], block: int) -> list[CallResult]:
        async with self._limit:
            with TIMINGS.timed("encode"):
                data = encode_aggregate3(chunk)
            with TIMINGS.timed("rpc"):
                raw = await self._rpc.call(self._multicall, data, block)
        with TIMINGS.timed("decode"):
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


def _refused_for_size(error: RpcError) -> bool:
    """Whether a smaller aggregate3 may succeed where this one failed: the node refused to execute it (out of gas,
    a response over its cap) or it timed out. A transport failure such as a 429 is not about size."""
    return error.answered or "TimeoutError" in error.reason


def _halves(chunk: Sequence[Call]) -> tuple[Sequence[Call], Sequence[Call]] | None:
    """The chunk cut in two near its middle, never right after a call that must keep with the next; None when
    it cannot be cut (one call, or one group kept together)."""
    cuts = [i for i in range(1, len(chunk)) if not chunk[i - 1].keep_with_next]
    if not cuts:
        return None
    cut = min(cuts, key=lambda i: abs(2 * i - len(chunk)))
    return chunk[:cut], chunk[cut:]
