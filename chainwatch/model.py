"""The records that flow through chainwatch: a position's identity, a reading of its health, and an alert.

Every stage (listener -> recompute -> alerts -> sender) speaks in these types; protocol modules produce
`Reading`s, the alert state machine turns them into `Alert`s, the outbox stores `Alert`s.
"""

from __future__ import annotations

import enum
import math

import msgspec


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of chainwatch's records: immutable, keyword-built, strict when decoded."""


class Discovered(Record, frozen=True, kw_only=True):
    """Something a protocol's discovery found in an account's past events (a market it entered, a sub-account's
    controller), and the block it was found at: kept in the store so that a restart scans only newer blocks."""

    account: str  # the watched account it belongs to
    market: str  # the protocol's own name for it, as its `restore` reads it back
    block: int


class Level(enum.IntEnum):
    """How close a position is to liquidation; a larger value is worse."""

    OK = 0
    WARN = 1
    CRITICAL = 2
    LIQUIDATABLE = 3


class PositionKey(Record, frozen=True, kw_only=True):
    """One watched position: an account on one configured protocol (and market, where health is per market)."""

    protocol: str
    account: str
    market: str = ""

    def as_text(self) -> str:
        return f"{self.protocol}:{self.account}" + (f":{self.market}" if self.market else "")


class Side(enum.Enum):
    COLLATERAL = "collateral"
    DEBT = "debt"


class AssetLine(Record, frozen=True, kw_only=True):
    """One asset of a position as the protocol counts it: whole tokens, their value in the reading's `currency`.

    `weight` is the share of a collateral's value that counts toward the liquidation line (Aave's liquidation
    threshold, Morpho's LLTV, Euler's liquidation LTV, the ratio Curvance's health uses); 1.0 for a debt. So the
    health a reading's lines imply is sum(collateral value x weight) / sum(debt value).
    """

    symbol: str
    side: Side
    amount: float
    value: float
    weight: float = 1.0

    @property
    def price(self) -> float:
        """Value per whole token, as the protocol priced this line (0 for an empty line)."""
        return self.value / self.amount if self.amount else 0.0


class Reading(Record, frozen=True, kw_only=True):
    """A position's health as read on chain at one block.

    `health_factor` is `math.inf` when the account has no debt. Collateral and debt are in the protocol's
    base currency (USD for Aave's usual oracle), already scaled to whole units. `liquidation_price`, where the
    protocol can tell it, is the price of `liquidation_asset` (in `currency`) at which health reaches 1.0,
    all else unchanged. `assets` (filled by detailed reads only) are the position's per-asset lines.
    """

    key: PositionKey
    block: int
    health_factor: float
    collateral: float
    debt: float
    currency: str = "USD"
    liquidation_price: float | None = None
    liquidation_asset: str = ""
    assets: tuple[AssetLine, ...] = ()

    @property
    def has_debt(self) -> bool:
        return not math.isinf(self.health_factor)


class AlertKind(enum.Enum):
    """What an alert tells the user; ordered by urgency through `priority`."""

    WARN = "WARN"
    CRITICAL = "CRITICAL"
    LIQUIDATABLE = "LIQUIDATABLE"
    RECOVERED = "RECOVERED"
    # The block behind an earlier alert was replaced (a reorg, an abandoned proposal) and its level does not hold.
    REPLACED = "REPLACED"
    # The position cannot be read or priced (an oracle reverting as stale, a quarantined market) / can be again.
    UNPRICED = "UNPRICED"
    PRICED = "PRICED"

    @property
    def priority(self) -> int:
        # Sent most urgent first; a recovery (or a retraction) is good news and can wait behind any warning.
        return {"LIQUIDATABLE": 30, "CRITICAL": 20, "UNPRICED": 20, "WARN": 10, "RECOVERED": 0, "REPLACED": 0,
                "PRICED": 0}[self.value]

    @classmethod
    def entering(cls, level: Level) -> AlertKind:
        return {
            Level.WARN: cls.WARN,
            Level.CRITICAL: cls.CRITICAL,
            Level.LIQUIDATABLE: cls.LIQUIDATABLE,
            Level.OK: cls.RECOVERED,
        }[level]


class Alert(Record, frozen=True, kw_only=True):
    """A change of a position's risk state that the user must hear about."""

    kind: AlertKind
    reading: Reading
    threshold: float
    label: str | None = None
    chat_id: int | None = None
    replaced_block: int | None = None  # for REPLACED: the block behind the alert that no longer holds

    @property
    def priority(self) -> int:
        return self.kind.priority
