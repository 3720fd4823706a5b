"""The text of an alert, the same for Telegram and standard output.

Plain text (no parse mode), so an untrusted label can never break the message or inject markup.
"""

from __future__ import annotations

import math

from chainwatch.model import Alert, AlertKind, Reading

_ICON = {
    AlertKind.LIQUIDATABLE: "\U0001f6a8",  # rotating light
    AlertKind.CRITICAL: "\U0001f534",  # red circle
    AlertKind.WARN: "\U0001f7e0",  # orange circle
    AlertKind.RECOVERED: "\U0001f7e2",  # green circle
}

_CROSSED = {
    AlertKind.LIQUIDATABLE: "below liquidation line",
    AlertKind.CRITICAL: "below critical threshold",
    AlertKind.WARN: "below warn threshold",
    AlertKind.RECOVERED: "back above warn threshold",
}


def alert_text(alert: Alert) -> str:
    reading = alert.reading
    key = reading.key
    who = key.account + (f" ({alert.label})" if alert.label else "")
    market = f" market {short_market(key.market)}" if key.market else ""
    crossing = f"{_CROSSED[alert.kind]} {alert.threshold:.3f}"
    return "\n".join(
        [
            f"{_ICON[alert.kind]} {alert.kind.value} on {key.protocol}{market}",
            f"Account {who}",
            f"Health factor {format_health(reading.health_factor)} ({crossing})",
            f"Collateral {reading.collateral:,.2f} {reading.currency} | Debt {reading.debt:,.2f} {reading.currency}",
            *_liquidation_line(reading),
            f"Block {reading.block}",
        ]
    )


def _liquidation_line(reading: Reading) -> list[str]:
    if reading.liquidation_price is None:
        return []
    price = reading.liquidation_price
    shown = f"{price:,.2f}" if price >= 1 else f"{price:.6g}"
    return [f"Liquidation price {reading.liquidation_asset} {shown} {reading.currency}"]


def short_market(market: str) -> str:
    """A market as people can read it: addresses whole (they get pasted into explorers), 32-byte ids cut."""
    head, _, suffix = market.partition("#")
    if len(head) == 66:  # a bytes32 market id (Morpho)
        head = f"{head[:10]}…{head[-4:]}"
    return head + (f"#{suffix}" if suffix else "")


def format_health(health_factor: float) -> str:
    return "no debt" if math.isinf(health_factor) else f"{health_factor:.3f}"
