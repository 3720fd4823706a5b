"""The seen chain: which heads replace blocks already seen."""

from __future__ import annotations

from chainwatch.canonical import Replaced, SeenChain
from chainwatch.chain import Head


def head(number: int, branch: str = "a", parent_branch: str | None = None) -> Head:
    parent = parent_branch or branch
    return Head(number=number, hash=f"0x{branch}{number}", parent_hash=f"0x{parent}{number - 1}")


def chain_of(*heads: Head) -> SeenChain:
    seen = SeenChain(max_depth=8)
    for h in heads:
        seen.record(h)
    return seen


class TestCheck:
    def test_the_next_block_on_the_same_branch_replaces_nothing(self) -> None:
        """A head whose parent is the tip, or an older head seen before, is no reorg."""
        seen = chain_of(head(1), head(2))
        assert seen.check(head(3)) is None and seen.check(head(2)) is None

    def test_another_hash_at_a_seen_height_replaces_from_there(self) -> None:
        """Block 2 seen as a2, now b2: replaced from height 2."""
        seen = chain_of(head(1), head(2))
        new = head(2, "b", parent_branch="a")
        assert seen.check(new) == Replaced(height=2, head=new)

    def test_a_parent_other_than_the_seen_block_replaces_the_parent(self) -> None:
        """Head b3 on parent b2, while a2 was seen: replaced from height 2."""
        seen = chain_of(head(1), head(2))
        new = head(3, "b")
        assert seen.check(new) == Replaced(height=2, head=new)

    def test_an_old_head_of_unknown_hash_is_no_reorg(self) -> None:
        """A backfill's range end below what is known says nothing by itself."""
        seen = chain_of(head(10), head(11))
        assert seen.check(head(5, "x")) is None


def test_forget_above_returns_the_orphaned_hashes_and_the_window_is_bounded() -> None:
    """Forgetting above 2 hands back a3 and a4; recording far ahead keeps only the last window."""
    seen = chain_of(head(1), head(2), head(3), head(4))
    assert seen.forget_above(2) == {"0xa3", "0xa4"} and seen.hash_at(3) is None
    for n in range(5, 200):
        seen.record(head(n))
    assert seen.lowest() is not None and seen.lowest() > 150  # type: ignore[operator]
