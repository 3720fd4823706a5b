"""Read plans' calls, built once: ABI-encoding the same calls again on every pass cost more than reading them.

Two kinds of reuse, both keyed by exactly what the calls are made from, so a reused call is always the call
that would be built now (nothing to invalidate by hand):
- `PlanCache`: one account's own calls, kept while the `basis` they were built from is unchanged (a basis is the
  immutable values the build reads: contract addresses, the account's markets or sub-accounts, compared by value;
  the build is given nothing else). A resolve or a newly found market changes the basis, and the calls are rebuilt.
- calls every account makes alike (a market's state, an oracle's prices) come from `lru_cache`d builders in
  each protocol module, keyed by their arguments: one object for all accounts; `shared` interns a basis the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Generic, TypeVar

B = TypeVar("B", bound=Hashable)
T = TypeVar("T")


class PlanCache(Generic[B, T]):
    """Per account, what `build(account, basis)` made from the last basis seen for it."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[B, T]] = {}

    def get(self, account: str, basis: B, build: Callable[[str, B], T]) -> T:
        entry = self._entries.get(account)
        if entry is not None and entry[0] == basis:
            return entry[1]
        built = build(account, basis)
        self._entries[account] = (basis, built)
        return built

    def __len__(self) -> int:
        return len(self._entries)


@lru_cache(maxsize=1024)
def shared(value: T) -> T:
    """The first value equal to `value` (hashable, immutable): equal bases and calls held once, not per account."""
    return value
