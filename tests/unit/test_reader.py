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
        if calls and calls[0][2][0] in self.failing:
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


class RefusingNode(EchoNode):
    """Refuses, as the node's own JSON-RPC error, every aggregate3 that holds a call with a poisoned payload (a view
    that burns all gas takes the whole eth_call down with it); optionally refuses even an empty one."""

    def __init__(self, poisoned: set[bytes], *, refuse_everything: bool = False) -> None:
        super().__init__(set())
        self.poisoned = poisoned
        self.refuse_everything = refuse_everything
        self.sizes: list[int] = []

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        (batch,) = decode(["(address,bool,bytes)[]"], data[4:])
        self.sizes.append(len(batch))
        if self.refuse_everything or any(payload in self.poisoned for _, _, payload in batch):
            raise RpcError("eth_call", "http_urls[0]: out of gas", answered=True)
        return await super().call(to, data, block)


class TestIsolatingAFailingCall:
    async def test_refused_chunk_is_split_until_the_poisoned_call_is_alone(self) -> None:
        """One chunk of 8 refused because of call 5: call 5 reads as failed, the 7 others are read, in a few
        halvings rather than 8 single calls."""
        node = RefusingNode(poisoned={bytes([5])})
        results = await Reader(node, TARGET, max_calls=8).read_what_can_be_read(calls(8), 100)  # type: ignore[arg-type]
        assert results[5] == CallResult(success=False, data=b"")
        assert [r for i, r in enumerate(results) if i != 5] == [CallResult(success=True, data=bytes([i]))
                                                                for i in range(8) if i != 5]  # fmt: skip
        assert node.sizes == [8, 0, 4, 4, 2, 2, 1, 1]  # the whole chunk, the empty probe, then halves to call 5

    async def test_all_or_nothing_read_sees_the_isolated_call_as_reverted(self) -> None:
        """`read` (resolving protocols) answers too: the poisoned call as a failed result, as a revert would be."""
        results = await Reader(RefusingNode(poisoned={bytes([0])}), TARGET).read(calls(3), 100)  # type: ignore[arg-type]
        assert [r.success for r in results] == [False, True, True]

    async def test_calls_kept_together_are_never_split_apart(self) -> None:
        """A pair tied with keep_with_next fails as a pair: an accrual is never read without the totals it updates."""
        tied = [Call(target=TARGET, data=bytes([i]), keep_with_next=i in (0, 2)) for i in range(4)]
        results = await Reader(RefusingNode(poisoned={bytes([3])}), TARGET).read_what_can_be_read(tied, 100)  # type: ignore[arg-type]
        assert [r is not None and r.success for r in results] == [True, True, False, False]

    async def test_a_block_the_node_cannot_execute_at_is_not_split(self) -> None:
        """When even an empty aggregate3 is refused (the block, not a call, is the trouble), nothing is split: the
        pass fails as a whole, to be tried again, after one probe."""
        node = RefusingNode(poisoned=set(), refuse_everything=True)
        with pytest.raises(ReadFailed, match="out of gas"):
            await Reader(node, TARGET, max_calls=4).read_what_can_be_read(calls(8), 100)  # type: ignore[arg-type]
        assert sorted(node.sizes) == [0, 4, 4]

    async def test_transport_failure_is_not_split(self) -> None:
        """A rate-limited request (not the node's answer) is not split: more requests would only make it worse."""
        node = EchoNode(failing_first_bytes={0})
        results = await Reader(node, TARGET, max_calls=4).read_what_can_be_read(calls(8), 100)  # type: ignore[arg-type]
        assert node.requests == 2 and results[:4] == [None] * 4


class SizeCappedNode(EchoNode):
    """Refuses every aggregate3 of more than `cap` calls, as a node over its gas or response cap does (`answered`),
    or by timing out (not answered, as a request that takes too long)."""

    def __init__(self, cap: int, *, reason: str = "out of gas", answered: bool = True) -> None:
        super().__init__(set())
        self.cap = cap
        self.reason = reason
        self.answered = answered
        self.refused: list[int] = []

    async def call(self, to: str, data: bytes, block: int) -> bytes:
        (batch,) = decode(["(address,bool,bytes)[]"], data[4:])
        if len(batch) > self.cap:
            self.refused.append(len(batch))
            raise RpcError("eth_call", f"http_urls[0]: {self.reason}", answered=self.answered)
        return await super().call(to, data, block)


def echoed(count: int) -> list[CallResult]:
    return [CallResult(success=True, data=bytes([i])) for i in range(count)]


class TestAdaptiveBatching:
    @pytest.mark.parametrize(("reason", "answered"), [("out of gas", True), ("response size exceeded", True),
                                                      ("TimeoutError", False)])  # fmt: skip
    async def test_refused_for_size_is_split_and_the_size_that_worked_is_kept(self, reason: str, answered: bool) -> None:
        """16 calls against a node that takes at most 5: all are read; the next pass starts at 4 and is never refused."""
        node = SizeCappedNode(5, reason=reason, answered=answered)
        reader = Reader(node, TARGET, max_calls=16)  # type: ignore[arg-type]
        assert await reader.read_what_can_be_read(calls(16), 100) == echoed(16)
        assert node.refused == [16, 8, 8] and reader.limit.calls == 4
        node.refused.clear()
        assert await reader.read_what_can_be_read(calls(16), 101) == echoed(16)
        assert node.refused == []

    async def test_the_limit_grows_back_slowly_and_falls_back_to_what_worked(self) -> None:
        """From 4, 20 full chunks raise the limit to 5, 20 more to 6; the node refuses 6, and the limit is 5 again."""
        node = SizeCappedNode(5)
        reader = Reader(node, TARGET, max_calls=16)  # type: ignore[arg-type]
        await reader.read_what_can_be_read(calls(16), 100)
        limits = []
        for block in range(101, 112):
            assert await reader.read_what_can_be_read(calls(20), block) == echoed(20)
            limits.append(reader.limit.calls)
        assert limits == [4, 4, 4, 5, 5, 5, 5, 5, 6, 5, 5]
        assert node.refused == [16, 8, 8, 6, 6, 6]

    async def test_a_call_timing_out_alone_is_unread_not_reverted(self) -> None:
        """A node that times out on every call but answers an empty batch: split to single calls, none is taken for
        a revert; the pass fails, to be tried again."""
        node = SizeCappedNode(0, reason="TimeoutError", answered=False)
        with pytest.raises(ReadFailed, match="TimeoutError"):
            await Reader(node, TARGET, max_calls=2).read_what_can_be_read(calls(2), 100)  # type: ignore[arg-type]
        assert node.refused == [2, 1, 1]

    async def test_a_poisoned_call_does_not_lower_the_limit(self) -> None:
        """A refusal that comes down to one gas-burning call is that call's fault: the limit stays where it was."""
        reader = Reader(RefusingNode(poisoned={bytes([5])}), TARGET, max_calls=8)  # type: ignore[arg-type]
        await reader.read_what_can_be_read(calls(8), 100)
        assert reader.limit.calls == 8
