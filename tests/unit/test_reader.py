"""The batched reader: chunking onto aggregate3 calls, and what a failed chunk costs."""

import pytest
from eth_abi import decode, encode

from chainwatch.multicall import Call, CallResult
from chainwatch.reader import ReadFailed, Reader
from chainwatch.rpc import RpcError

TARGET = "0x" + "11" * 20


class EchoNode:
    """Stands in for the JSON-RPC edge: answers aggregate3 by echoing each call's data; some chunks fail."""

    def __init__(self, failing_first_bytes: set[int]) -> None:
        self.failing = failing_first_bytes
        self.requests = 0

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        self.requests += 1
        (calls,) = decode(["(address,bool,bytes)[]"], data[4:])
        if calls[0][2][0] in self.failing:
            raise RpcError("eth_call", "http_urls[0]: 429 Too Many Requests")
        return encode(["(bool,bytes)[]"], [[(True, payload) for _, _, payload in calls]])


def calls(count: int) -> list[Call]:
    return [Call(target=TARGET, data=bytes([i])) for i in range(count)]


class TestPartialFailure:
    async def test_a_failed_chunk_costs_only_its_calls(self) -> None:
        """With chunks of 3, the failing second chunk leaves None in its 3 places; the others are read."""
        node = EchoNode(failing_first_bytes={3})
        results = await Reader(node, TARGET, max_calls=3).read_what_can_be_read(calls(8), 100)  # type: ignore[arg-type]
        assert node.requests == 3
        assert results[3:6] == [None, None, None]
        assert results[:3] + results[6:] == [CallResult(success=True, data=bytes([i])) for i in (0, 1, 2, 6, 7)]

    async def test_nothing_readable_is_read_failed(self) -> None:
        """When every chunk fails, the pass fails as a whole, naming the block."""
        node = EchoNode(failing_first_bytes={0, 3})
        with pytest.raises(ReadFailed, match="at block 100"):
            await Reader(node, TARGET, max_calls=3).read_what_can_be_read(calls(6), 100)  # type: ignore[arg-type]

    async def test_all_or_nothing_read_raises_on_any_failure(self) -> None:
        """`read` (used to resolve protocols) never returns a partial answer."""
        node = EchoNode(failing_first_bytes={3})
        with pytest.raises(ReadFailed):
            await Reader(node, TARGET, max_calls=3).read(calls(6), 100)  # type: ignore[arg-type]
