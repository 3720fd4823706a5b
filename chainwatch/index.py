"""The exposure index: which watched accounts a price move can touch.

A price feed prices assets of a protocol; an account on that protocol is exposed to the assets it supplies
as collateral or borrows. Kept current from each read of the account, so a price update re-reads only the
accounts that hold the asset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from chainwatch.feeds import PriceSource, as_price_source
from chainwatch.model import Record


_DISTINCT_KEPT = 4096


class Target(Record, frozen=True, kw_only=True, order=True):
    """An account on one configured protocol: the unit chainwatch reads."""

    protocol: str
    account: str


class ExposureIndex:
    def __init__(self) -> None:
        self._assets_of: dict[Target, frozenset[str]] = {}
        self._holders: defaultdict[tuple[str, str], set[Target]] = defaultdict(set)
        self._priced_by: dict[PriceSource, set[tuple[str, str]]] = {}
        # Each distinct set of assets held once: most accounts hold one of a few combinations, and a set per
        # account was ~20 MiB at 100,000.
        self._distinct: dict[frozenset[str], frozenset[str]] = {}

    def set_exposure(self, target: Target, assets: frozenset[str]) -> None:
        if len(self._distinct) > _DISTINCT_KEPT:
            self._distinct.clear()  # combinations no longer held pile up over a long run; sets in use stay valid
        assets = self._distinct.setdefault(assets, assets)
        for asset in self._assets_of.get(target, frozenset()) - assets:
            self._holders[(target.protocol, asset)].discard(target)
        for asset in assets:
            self._holders[(target.protocol, asset)].add(target)
        self._assets_of[target] = assets

    def exposure_of(self, target: Target) -> frozenset[str]:
        return self._assets_of.get(target, frozenset())

    def set_feeds(self, protocol: str, feeds: Mapping[PriceSource | str, frozenset[str]]) -> None:
        """Replaces what `protocol`'s price sources price (source, or a bare emitter address -> assets)."""
        for priced in self._priced_by.values():
            priced -= {entry for entry in priced if entry[0] == protocol}
        for feed, assets in feeds.items():
            self._priced_by.setdefault(as_price_source(feed), set()).update((protocol, asset) for asset in assets)
        self._priced_by = {feed: priced for feed, priced in self._priced_by.items() if priced}

    def feeds(self) -> frozenset[str]:
        """The emitting contracts to subscribe to (a multi-feed contract once, whatever its feed ids)."""
        return frozenset(source.emitter for source in self._priced_by)

    def targets_holding(self, protocol: str, keys: frozenset[str]) -> set[Target]:
        """Accounts on `protocol` exposed to any of `keys` (a market-wide change touches them all)."""
        return {target for key in keys for target in self._holders.get((protocol, key), ())}

    def targets_priced_by(self, source: PriceSource | str) -> set[Target]:
        """Accounts holding, as collateral or debt, any asset that `source` prices (only that feed id of a
        multi-feed contract: another id's update touches nobody here)."""
        return {
            target
            for protocol_asset in self._priced_by.get(as_price_source(source), ())
            for target in self._holders.get(protocol_asset, ())
        }
