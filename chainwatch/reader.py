"""Batched, block-pinned reads: many view calls as a few `aggregate3` eth_calls, run concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from eth_abi.exceptions import DecodingError

from chainwatch.multicall import (
    Call,
    CallResult,
    chunked,
    decode_aggregate3,
    encode_aggregate3,
)
from chainwatch.rpc import Rpc, RpcError


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
        """Results in call order, every call made at `block`; raises ReadFailed rather than guess."""
        if not calls:
            return []
        chunks = list(chunked(calls, max_calls=self._max_calls, max_gas=self._max_gas))
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._read_chunk(chunk, block)) for chunk in chunks]
        except* (RpcError, ValueError, DecodingError) as failures:
            raise ReadFailed(block, len(calls), str(failures.exceptions[0])) from None
        return [result for task in tasks for result in task.result()]

    async def read_what_can_be_read(self, calls: Sequence[Call], block: int) -> list[CallResult | None]:
        """Like `read`, but a failed chunk costs only its own calls (None in their places), not the whole pass:
        with thousands of positions, one rate-limited request must not leave every one of them unread.
        Raises ReadFailed only when nothing at all could be read."""
        if not calls:
            return []
        chunks = list(chunked(calls, max_calls=self._max_calls, max_gas=self._max_gas))
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._read_chunk_or_none(chunk, block)) for chunk in chunks]
        outcomes = [task.result() for task in tasks]
        failures = [reason for _, reason in outcomes if reason is not None]
        if len(failures) == len(chunks):
            raise ReadFailed(block, len(calls), failures[0])
        return [
            result
            for (results, _), chunk in zip(outcomes, chunks)
            for result in (results if results is not None else [None] * len(chunk))
        ]

    async def _read_chunk_or_none(
        self, chunk: Sequence[Call], block: int
    ) -> tuple[list[CallResult] | None, str | None]:
        try:
            return await self._read_chunk(chunk, block), None
        except (RpcError, ValueError, DecodingError) as error:
            return None, str(error)

    async def _read_chunk(self, chunk: Sequence[Call], block: int) -> list[CallResult]:
        async with self._limit:
            raw = await self._rpc.call(self._multicall, encode_aggregate3(chunk), block)
        return decode_aggregate3(raw, len(chunk))
