"""The one small interface every lending protocol module implements; nothing outside a module knows its ABI.

The listener, index, reader and alerts work only through this: which logs to hear, what a log touches,
which calls read an account, and how results become `Reading`s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from chainwatch.chain import Log, LogFilter
from chainwatch.feeds import PriceSource
from chainwatch.model import Discovered, Reading, Record
from chainwatch.multicall import Call, CallResult
from chainwatch.reader import Reader
from chainwatch.rpc import Rpc


class AccountsTouched(Record, frozen=True, kw_only=True, tag="accounts"):
    """A protocol event that changes these accounts' positions (they are re-read and re-indexed)."""

    accounts: frozenset[str]


class MarketsTouched(Record, frozen=True, kw_only=True, tag="markets"):
    """A market-wide change (rates, indexes, parameters): every watched account exposed to these keys is re-read.

    Keys are the protocol's own exposure keys, the same strings a plan's `decode` puts in `exposure`. `drift`
    marks the frequent, small kind (new rates or indexes on every action in a busy market): those re-reads are
    spaced out (`[refresh] market_event_min_blocks`); a parameter change (a liquidation threshold) is not.
    """

    keys: frozenset[str]
    drift: bool = False


class SourcesChanged(Record, frozen=True, kw_only=True, tag="sources"):
    """The protocol's oracle now prices some asset from another feed (or a proxy it followed confirmed a new
    aggregator): resolve feeds and resubscribe."""


class MarketsFound(Record, frozen=True, kw_only=True, tag="found"):
    """These accounts' events name a market the protocol has not resolved: `resolve_found` resolves that market
    alone, and only these accounts are read again (not every account of the protocol, as for `SourcesChanged`)."""

    accounts: frozenset[str]


Touch = AccountsTouched | MarketsTouched | SourcesChanged | MarketsFound


class Unreadable(Record, frozen=True, kw_only=True):
    """One market (reserve, vault) of an account that could not be read, and why: shown as such, never dropped.

    Anyone can open a Morpho market and supply collateral on behalf of any address, so a watched account may be
    handed a market whose token or oracle reverts: that market is quarantined, the account's others still read.
    """

    market: str
    reason: str


class PriceBasis(Record, frozen=True, kw_only=True):
    """What a protocol keeps from one read to tell, without reading again, how low the account's health can be at
    other prices of its assets (see screening.py). Each protocol subclasses it with its own amounts and math."""

    block: int  # the block the amounts were read at

    def health_at(self, prices: Mapping[str, int]) -> float | None:
        """A lower bound on the health factor the protocol would compute at `prices` (exposure key -> the new
        price in the protocol's oracle units; keys absent keep the read's price), every amount as last read.
        None when the bound cannot be told exactly (the move touches amounts not known per asset)."""
        return None


class AccountReading(Record, frozen=True, kw_only=True):
    """What one read of an account yields: its positions' health, and what it is exposed to.

    Exposure keys are the protocol's choice (Aave: reserve assets; a per-market protocol: market ids); they are
    what `price_feeds()` maps feeds to and what `MarketsTouched` names.
    """

    readings: tuple[Reading, ...]
    exposure: frozenset[str]
    # The read found more to read (a sub-account that moved to a controller it was not asked about): the readings
    # are right as far as they go, and the account is read again at once.
    read_again: bool = False
    # Markets of the account that could not be resolved or read this time (the readings cover the others).
    unreadable: tuple[Unreadable, ...] = ()
    # Set when the one reading's health at other prices can be bounded from this read's amounts (screening).
    basis: PriceBasis | None = None


class ReadPlan(NamedTuple):
    """The calls that read one account, and how their results (in call order) and the block become a reading.

    `decode` carries whatever the planning knew (which markets, which sub-accounts): nothing is kept in the
    protocol between planning and decoding, so two plans for one account can never be confused.
    """

    calls: tuple[Call, ...]
    decode: Callable[[Sequence[CallResult], int], AccountReading]


class ReadError(Exception):
    """A protocol call for one account reverted or returned something undecodable."""


class LendingProtocol(Protocol):
    name: str
    # What a stored discovery scan covers (the contract whose events it reads, and what it filters them by): a
    # scan stored under another scope is not trusted. None: discovery reads no history, nothing is stored.
    discovery_scope: str | None

    async def resolve(self, reader: Reader, block: int) -> None:
        """Finds the protocol's contracts, assets and price feeds on chain, at `block`."""

    async def resolve_found(self, reader: Reader, block: int) -> None:
        """Resolves only what a `MarketsFound` touch named (the new market), at `block`."""

    async def discover(self, rpc: Rpc, reader: Reader, accounts: Sequence[str], block: int, *,
                       after: int | None = None) -> Sequence[Discovered]:  # fmt: skip
        """Learns where the watched accounts have positions (e.g. from their past events, only those above `after`
        when an earlier scan, its finds `restore`d, covered the blocks up to it); returns what it found, to keep."""

    def restore(self, found: Sequence[Discovered]) -> None:
        """Takes back what an earlier `discover` found (from the store), before discovering what is newer."""

    def log_filter(self) -> LogFilter:
        """The protocol's own contracts and event signatures to listen to (not the price feeds)."""

    def price_feeds(self) -> dict[PriceSource, frozenset[str]] | dict[str, frozenset[str]]:
        """Price source (from `feeds.follow_feeds`; a bare lower-case address means a single-feed emitter) ->
        the exposure keys whose value it moves."""

    def direct_prices(self) -> dict[PriceSource, frozenset[str]]:
        """Price sources whose new answer IS the protocol's price of these exposure keys (no proxy, ratio or
        scaling in between), so a reading's `basis` can be screened at it; empty when none is."""

    def touched_by(self, log: Log) -> Touch | None:
        """What a log from `log_filter()` means for watched positions; None when nothing."""

    def plan(self, account: str, *, detailed: bool = False) -> ReadPlan:
        """The calls that read `account`'s positions and their decoding; `decode` raises ReadError on bad results.

        `detailed` adds what fills each reading's per-asset lines (`Reading.assets`); without it the calls are the
        hot path's, as few as the health factors need.
        """
