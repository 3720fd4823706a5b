"""The chain as chainwatch has seen it: block hashes by height over a window, to tell when a head replaces blocks.

A head whose height was seen with another hash, or whose parent is not the block seen below it, means blocks
were replaced (a reorg; on Monad, an abandoned proposal). Pure: the engine asks the node for the common ancestor
and decides what to forget.
"""

from __future__ import annotations

from chainwatch.chain import Head
from chainwatch.model import Record


class Replaced(Record, frozen=True, kw_only=True):
    """Blocks from `height` up were replaced by the branch `head` is on."""

    height: int
    head: Head


class SeenChain:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self._hashes: dict[int, str] = {}

    def check(self, head: Head) -> Replaced | None:
        """Whether `head` replaces blocks seen before; the lowest height it contradicts."""
        seen = self._hashes.get(head.number)
        if seen is not None and seen != head.hash:
            return Replaced(height=head.number, head=head)
        parent = self._hashes.get(head.number - 1)
        if parent is not None and parent != head.parent_hash:
            return Replaced(height=head.number - 1, head=head)
        # An older head of unknown hash (a backfill's range end) contradicts nothing: a real branch shows itself
        # through its next head's parent.
        return None

    def record(self, head: Head) -> None:
        self._hashes[head.number] = head.hash
        self._hashes[head.number - 1] = self._hashes.get(head.number - 1, head.parent_hash)
        if len(self._hashes) > 4 * self.max_depth + 16:
            horizon = max(self._hashes) - 2 * self.max_depth
            self._hashes = {n: h for n, h in self._hashes.items() if n >= horizon}

    def hash_at(self, number: int) -> str | None:
        return self._hashes.get(number)

    def lowest(self) -> int | None:
        return min(self._hashes, default=None)

    def forget_above(self, ancestor: int) -> set[str]:
        """Drops every block above `ancestor`; returns their hashes (the orphaned blocks)."""
        orphaned = {h for n, h in self._hashes.items() if n > ancestor}
        self._hashes = {n: h for n, h in self._hashes.items() if n <= ancestor}
        return orphaned
