"""Cutting a pass into aggregate3-sized chunks of targets, and the per-stage time accumulator."""

from __future__ import annotations

from collections.abc import Sequence

from chainwatch.index import Target
from chainwatch.multicall import Call, CallResult
from chainwatch.protocols.base import AccountReading, ReadPlan
from chainwatch.read_pass import plan_chunks
from chainwatch.stage_timings import StageTimings

ORACLE = "0x" + "0c" * 20


class TwoCalls:
    """One call of its own per account and one shared by all (an oracle's prices)."""

    name = "p"

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        def decode(results: Sequence[CallResult], block: int) -> AccountReading:
            raise AssertionError("not read here")

        return ReadPlan(calls=(Call(target=ORACLE, data=account.encode()), Call(target=ORACLE, data=b"prices")),
                        decode=decode)  # fmt: skip


def targets(count: int) -> list[Target]:
    return [Target(protocol="p", account=f"0x{i:02d}") for i in range(count)]


class TestPlanChunks:
    def test_chunks_grow_from_an_eighth_to_the_limit_in_the_order_given(self) -> None:
        """With 40 calls a chunk at most, the first holds 5 calls, then 10, 20, 40, 40; a shared call counts once
        (4 accounts in 5 calls) and the order given is kept."""
        ordered = list(reversed(targets(90)))
        chunks = list(plan_chunks({"p": TwoCalls()}, ordered, 40))  # type: ignore[dict-item]
        sizes = [len(chunk) for chunk in chunks]
        assert sizes == [4, 9, 19, 39, 19]
        assert [t for chunk in chunks for t, _ in chunk] == ordered

    def test_a_target_with_more_calls_than_a_chunk_gets_a_chunk_alone(self) -> None:
        chunks = list(plan_chunks({"p": TwoCalls()}, targets(2), 8))  # type: ignore[dict-item]
        assert [len(chunk) for chunk in chunks] == [1, 1]

    def test_no_targets_no_chunks(self) -> None:
        assert list(plan_chunks({"p": TwoCalls()}, [], 5)) == []  # type: ignore[dict-item]


class TestStageTimings:
    def test_take_sums_each_stage_in_milliseconds_and_starts_afresh(self) -> None:
        timings = StageTimings()
        timings.add("rpc", 0.002)
        timings.add("rpc", 0.003)
        timings.add("commit", 0.0015)
        assert timings.take() == {"rpc_ms": 5.0, "commit_ms": 1.5}
        assert timings.take() == {}

    def test_timed_counts_a_block_that_raised(self) -> None:
        timings = StageTimings()
        try:
            with timings.timed("decode"):
                raise ValueError("bad answer")
        except ValueError:
            pass
        assert set(timings.take()) == {"decode_ms"}
