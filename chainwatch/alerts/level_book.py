"""Every (chat, position)'s stored level, and which of them belong to an account, kept together.

Each pass orders its targets riskiest first by the lowest health stored for any of their positions. Found by a
scan of every level, that cost a pass ~130 ms at 100,000 positions whatever its size (a block with one price
event paid it as much as the warm restart's catch-up); with the account's slots at hand it costs the pass's own
targets only.
"""

from __future__ import annotations

import math
from collections.abc import ItemsView, Iterator, Mapping

from chainwatch.store import ChatPosition, StoredLevel


class LevelBook:
    def __init__(self, levels: Mapping[ChatPosition, StoredLevel]) -> None:
        self._levels: dict[ChatPosition, StoredLevel] = {}
        # Account -> its slots (any protocol, market or chat): a tuple, as most accounts have one or two.
        self._slots_of: dict[str, tuple[ChatPosition, ...]] = {}
        for slot, stored in levels.items():
            self[slot] = stored

    def get(self, slot: ChatPosition) -> StoredLevel | None:
        return self._levels.get(slot)

    def __setitem__(self, slot: ChatPosition, stored: StoredLevel) -> None:
        if slot not in self._levels:
            self._slots_of[slot.key.account] = (*self._slots_of.get(slot.key.account, ()), slot)
        self._levels[slot] = stored

    def __delitem__(self, slot: ChatPosition) -> None:
        del self._levels[slot]
        rest = tuple(s for s in self._slots_of[slot.key.account] if s != slot)
        if rest:
            self._slots_of[slot.key.account] = rest
        else:
            del self._slots_of[slot.key.account]

    def __contains__(self, slot: object) -> bool:
        return slot in self._levels

    def __iter__(self) -> Iterator[ChatPosition]:
        return iter(self._levels)

    def __len__(self) -> int:
        return len(self._levels)

    def items(self) -> ItemsView[ChatPosition, StoredLevel]:
        return self._levels.items()

    def lowest_health(self, protocol: str, account: str) -> float:
        """The lowest health stored for any position of `account` on `protocol` (any chat); inf when none is."""
        return min(
            (self._levels[s].health_factor for s in self._slots_of.get(account, ()) if s.key.protocol == protocol),
            default=math.inf,
        )
