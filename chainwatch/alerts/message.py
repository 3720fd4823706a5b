"""The text of an alert, the same for Telegram and standard output.

Plain text (no parse mode), so an untrusted label can never break the message or inject markup.
"""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Decimal

from chainwatch.model import Alert, AlertKind, PositionKey, Reading
from chainwatch.positions import LiquidationPrice, liquidation_prices

_ICON = {
    AlertKind.LIQUIDATABLE: "\U0001f6a8",  # rotating light
    AlertKind.CRITICAL: "\U0001f534",  # red circle
    AlertKind.WARN: "\U0001f7e0",  # orange circle
    AlertKind.RECOVERED: "\U0001f7e2",  # green circle
    AlertKind.REPLACED: "\u21a9\ufe0f",  # leftwards arrow with hook
    AlertKind.UNPRICED: "\u26a0\ufe0f",  # warning sign
    AlertKind.PRICED: "\u2705",  # check mark
}

_CROSSED = {
    AlertKind.LIQUIDATABLE: "below liquidation line",
    AlertKind.CRITICAL: "below critical threshold",
    AlertKind.WARN: "below warn threshold",
    AlertKind.RECOVERED: "back above warn threshold",
    AlertKind.REPLACED: "on the canonical chain",
    AlertKind.UNPRICED: "",
    AlertKind.PRICED: "readable again",
}


def alert_text(alert: Alert) -> str:
    reading = alert.reading
    key = reading.key
    who = key.account + (f" ({alert.label})" if alert.label else "")
    market = f" market {short_market(key.market)}" if key.market else ""
    crossing = f"{_CROSSED[alert.kind]} {alert.threshold:.3f}"
    replaced = (
        [f"The block behind the previous alert ({alert.replaced_block}) was replaced; it no longer holds."]
        if alert.kind is AlertKind.REPLACED
        else []
    )
    if alert.kind in (AlertKind.REPLACED, AlertKind.PRICED):
        crossing = _CROSSED[alert.kind]
    return "\n".join(
        [
            f"{_ICON[alert.kind]} {alert.kind.value} on {key.protocol}{market}",
            f"Account {who}",
            *replaced,
            f"Health factor {format_health(reading.health_factor)} ({crossing})",
            f"Collateral {reading.collateral:,.2f} {reading.currency} | Debt {reading.debt:,.2f} {reading.currency}",
            *_liquidation_line(reading),
            f"Block {reading.block}",
        ]
    )


def unpriced_text(key: PositionKey, label: str | None, reason: str, failures: int, block: int) -> str:
    """The message that a position cannot be priced: chainwatch cannot warn about it until it can."""
    who = key.account + (f" ({label})" if label else "")
    market = f" market {short_market(key.market)}" if key.market else ""
    cause = reason if len(reason) <= 200 else reason[:199] + "…"
    return "\n".join([
        f"{_ICON[AlertKind.UNPRICED]} UNPRICED on {key.protocol}{market}",
        f"Account {who}",
        f"This position cannot be read or priced ({failures} reads in a row failed): {cause}",
        "chainwatch keeps trying and tells you when it can price it again; until then it cannot warn you about it.",
        f"Block {block}",
    ])  # fmt: skip


def _liquidation_line(reading: Reading) -> list[str]:
    if reading.liquidation_price is None:
        return [_per_asset(price, reading.currency) for price in liquidation_prices(reading)]
    return [f"Liquidation price {reading.liquidation_asset} {_price(reading.liquidation_price)} {reading.currency}"]


def _per_asset(price: LiquidationPrice, currency: str) -> str:
    if price.price is None:
        return f"Liquidation price {price.symbol} none: the other collateral alone covers the debt"
    drop = f" ({price.drop:.1%} below now)" if price.drop is not None and price.drop > 0 else ""
    return f"Liquidation price {price.symbol} {_price(price.price)} {currency}{drop}, others unchanged"


def _price(price: float) -> str:
    return f"{price:,.2f}" if price >= 1 else f"{price:.6g}"


def short_market(market: str) -> str:
    """A market as people can read it: addresses whole (they get pasted into explorers), 32-byte ids cut."""
    head, _, suffix = market.partition("#")
    if len(head) == 66:  # a bytes32 market id (Morpho)
        head = f"{head[:10]}…{head[-4:]}"
    return head + (f"#{suffix}" if suffix else "")


def format_health(health_factor: float) -> str:
    """Three decimals, rounded down: a position at 0.9996 is liquidatable and must never read 1.000."""
    if math.isinf(health_factor):
        return "no debt"
    if math.isnan(health_factor):
        return "unknown"
    # Decimal of the float's exact value: 1.1 * 1000 in binary floats is 1100.0000000000002 or 1099.999..., and a
    # plain floor of that could cut a whole thousandth.
    return f"{Decimal(repr(health_factor)).quantize(Decimal('0.001'), rounding=ROUND_FLOOR)}"
