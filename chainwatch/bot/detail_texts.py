"""The texts of /position and /repay: per asset amounts and values, liquidation prices, what to repay or add."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from chainwatch.alerts.message import format_health
from chainwatch.bot.texts import distance_to_liquidation, position_name, who
from chainwatch.index import Target
from chainwatch.model import Reading, Side
from chainwatch.positions import liquidation_prices, repay_to


def amount(value: float) -> str:
    """A token amount people can read and act on: never rounded to zero, never a run of digits."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    if abs(value) >= 1:
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return f"{value:.6g}"


def amount_up(value: float) -> str:
    """An amount to act on (repay, add), rounded up at the shown precision so that doing it reaches the target."""
    if value >= 1000:
        digits = 2
    elif value >= 1:
        digits = 4
    else:
        digits = max(0, 5 - math.floor(math.log10(value))) if value > 0 else 0
    scale = 10**digits
    shown = math.ceil(value * scale - 1e-9) / scale
    return f"{shown:,.{digits}f}" if value >= 1000 else f"{shown:.{digits}f}"


def money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}" if not math.isnan(value) else f"? {currency}"


def _held(reading: Reading) -> bool:
    return reading.debt > 0 or (reading.collateral > 0 and not math.isnan(reading.collateral))


def _failed_line(failed: Sequence[Target], address: str) -> list[str]:
    names = sorted({t.protocol for t in failed if t.account == address})
    return [f"  could not be read now: {', '.join(names)} (try again shortly)"] if names else []


def position_text(addresses: Sequence[tuple[str, str | None]], readings: Sequence[Reading], failed: Sequence[Target]) -> str:
    blocks = []
    for address, label in addresses:
        mine = sorted((r for r in readings if r.key.account == address and _held(r)), key=lambda r: r.health_factor)
        lines = [who(address, label)]
        if not mine:
            lines.append("  no position")
        for reading in mine:
            lines += _position_lines(reading)
        lines += _failed_line(failed, address)
        if mine:
            lines.append(f"  at block {max(r.block for r in mine)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _position_lines(reading: Reading) -> list[str]:
    currency = reading.currency
    lines = [
        f"  {position_name(reading)}: health {format_health(reading.health_factor)} "
        f"({distance_to_liquidation(reading.health_factor)})",
    ]
    collateral = [a for a in reading.assets if a.side is Side.COLLATERAL and a.amount > 0]
    debt = [a for a in reading.assets if a.side is Side.DEBT and a.amount > 0]
    if not reading.assets:  # a protocol that gives totals only
        lines.append(f"    collateral {money(reading.collateral, currency)}, debt {money(reading.debt, currency)}")
    for line in collateral:
        lines.append(f"    collateral {amount(line.amount)} {line.symbol} = {money(line.value, currency)}")
    for line in debt:
        lines.append(f"    debt {amount(line.amount)} {line.symbol} = {money(line.value, currency)}")
    for price in liquidation_prices(reading):
        if price.price is None:
            lines.append(f"    {price.symbol}: no fall of its price alone liquidates this position")
        elif price.drop is not None and price.drop <= 0:
            lines.append(f"    {price.symbol}: liquidatable now (line at {amount(price.price)} {currency})")
        else:
            drop = math.floor((price.drop or 0.0) * 1000) / 10
            lines.append(f"    liquidation if {price.symbol} falls to {amount(price.price)} {currency} "
                         f"({drop:.1f}% below {amount(price.current_price)}), the rest unchanged")  # fmt: skip
    if not reading.assets and reading.liquidation_price is not None:
        lines.append(f"    liquidation if {reading.liquidation_asset} falls to {amount(reading.liquidation_price)} {currency}")
    return lines


def repay_text(
    addresses: Sequence[tuple[str, str | None]], readings: Sequence[Reading], failed: Sequence[Target],
    target_of: Callable[[Reading], float],
) -> str:  # fmt: skip
    blocks = []
    for address, label in addresses:
        lines = [who(address, label)]
        mine = sorted((r for r in readings if r.key.account == address and r.debt > 0), key=lambda r: r.health_factor)
        below = [(r, target_of(r)) for r in mine if r.health_factor < target_of(r)]
        if not below:
            healthy = ", ".join(f"{position_name(r)} {format_health(r.health_factor)}" for r in mine)
            lines.append("  nothing to repay: every position is at or above its target" + (f" ({healthy})" if healthy else ""))
        for reading, target in below:
            lines += _repay_lines(reading, target)
        lines += _failed_line(failed, address)
        if mine:
            lines.append(f"  at block {max(r.block for r in mine)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _repay_lines(reading: Reading, target: float) -> list[str]:
    plan = repay_to(reading, target)
    head = f"  {position_name(reading)}: health {format_health(reading.health_factor)}, target {target:.3f}"
    if plan is None:
        return [head]
    lines = [head]
    if plan.repay is not None:
        lines.append(f"    repay {amount_up(plan.repay.amount)} {plan.repay.symbol}")
        if not plan.repay.reaches_target:
            lines.append(f"    (that is all of this debt; {money(plan.repay.remaining, reading.currency)} more of "
                         "other debt would be needed)")  # fmt: skip
    elif not reading.assets:
        short = reading.debt - reading.health_factor * reading.debt / target
        lines.append(f"    repay debt worth {money(short, reading.currency)}")
    for add in plan.add_collateral:
        lines.append(f"    or add {amount_up(add.amount)} {add.symbol} of collateral")
    return lines
