"""The one small interface every lending protocol module implements; nothing outside a module knows its ABI.

The listener, index, reader and alerts work only through this: which logs to hear, what a log touches,
which calls read an account, and how results become `Reading`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chainwatch.chain import Log, LogFilter
from chainwatch.model import Reading, Record
from chainwatch.multicall import Call, CallResult
from chainwatch.reader import Reader


class AccountsTouched(Record, frozen=True, kw_only=True, tag="accounts"):
    """A protocol event that changes these accounts' positions (they are re-read and re-indexed)."""

    accounts: frozenset[str]


class SourcesChanged(Record, frozen=True, kw_only=True, tag="sources"):
    """The protocol's oracle now prices some asset from another feed: resolve feeds and resubscribe."""


Touch = AccountsTouched | SourcesChanged


class AccountReading(Record, frozen=True, kw_only=True):
    """What one read of an account yields: its positions' health, and the assets it is exposed to."""

    readings: tuple[Reading, ...]
    exposure: frozenset[str]


class ReadError(Exception):
    """A protocol call for one account reverted or returned something undecodable."""


class LendingProtocol(Protocol):
    name: str

    async def resolve(self, reader: Reader, block: int) -> None:
        """Finds the protocol's contracts, assets and price feeds on chain, at `block`."""

    def log_filter(self) -> LogFilter:
        """The protocol's own contracts and event signatures to listen to (not the price feeds)."""

    def price_feeds(self) -> dict[str, frozenset[str]]:
        """Emitting feed address (lower-case) -> the protocol's assets it prices."""

    def touched_by(self, log: Log) -> Touch | None:
        """What a log from `log_filter()` means for watched positions; None when nothing."""

    def read_calls(self, account: str) -> Sequence[Call]:
        """The calls that read `account`'s positions; their results go to `decode_account`."""

    def decode_account(self, account: str, results: Sequence[CallResult], block: int) -> AccountReading:
        """Turns the results of `read_calls(account)` into readings; raises ReadError when they are bad."""
