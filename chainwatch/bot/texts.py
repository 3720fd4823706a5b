"""What the bot says: pure functions from readings and settings to plain text (no parse mode, so nothing a user
typed can turn into markup), and the split of long replies into Telegram-sized parts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

from chainwatch.alerts.directory import Subscription
from chainwatch.alerts.message import format_health, short_market
from chainwatch.alerts.state import Thresholds, classify
from chainwatch.chat_settings import ANY, ThresholdRule
from chainwatch.model import Level, Reading

MAX_MESSAGE = 4096
EXAMPLE = "0x52908400098527886E0F7030069857D2E4169EE7"

# (command, argument form, what it does, example arguments): the menu, /help and every usage line.
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("start", "", "what this bot does", ""),
    ("help", "", "every command with an example", ""),
    ("add", "ADDRESS [LABEL]", "watch an address on every protocol", f"{EXAMPLE} savings"),
    ("remove", "ADDRESS|LABEL", "stop watching it", "savings"),
    ("list", "", "your addresses, thresholds and mutes", ""),
    ("check", "[ADDRESS|LABEL]", "health of each position now", "savings"),
    ("position", "[ADDRESS|LABEL]", "collateral, debt and liquidation prices", "savings"),
    ("repay", "[ADDRESS|LABEL] [TARGET]", "how much to repay to reach a health factor", "savings 1.8"),
    ("threshold", "ADDRESS|LABEL|all [PROTOCOL [MARKET]] WARN CRITICAL", "your alert levels (or ... reset)",
     "all 1.6 1.25"),
    ("mute", "ADDRESS|LABEL|all [DURATION]", "silence warnings (never LIQUIDATABLE)", "savings 2h"),
    ("unmute", "ADDRESS|LABEL|all", "hear warnings again", "savings"),
    ("status", "", "the service's own health", ""),
    ("stop", "", "forget everything of this chat", ""),
)  # fmt: skip
_BY_NAME = {c[0]: c for c in COMMANDS}

DISCLAIMER = "Alerts are best effort and may be late or missed; they are not financial advice. Watch your own positions too."


def usage(command: str) -> str:
    name, form, _, example = _BY_NAME[command]
    shown = f"/{name} {form}".rstrip()
    return f"Usage: {shown}" + (f"\nExample: /{name} {example}" if example else "")


def help_text(protocols: Sequence[str]) -> str:
    lines = [
        "chainwatch warns you on Telegram, from the next block, when a lending position you watch gets close to "
        "liquidation: WARN, CRITICAL and LIQUIDATABLE, and RECOVERED when it is safe again.",
        f"Protocols watched here: {', '.join(protocols)}.",
        "",
        "Commands:",
    ]
    for name, form, what, example in COMMANDS:
        lines.append(f"/{name} {form}".rstrip() + f" - {what}")
        if example:
            lines.append(f"    e.g. /{name} {example}")
    lines += ["", "Sending an address alone checks it once, with a button to watch it.", "", DISCLAIMER]
    return "\n".join(lines)


def who(address: str, label: str | None) -> str:
    return f"{address} ({label})" if label else address


def distance_to_liquidation(health_factor: float) -> str:
    """How far the collateral's value may fall before liquidation, rounded down like health factors."""
    if math.isinf(health_factor):
        return "no debt"
    if health_factor < 1.0:
        return "liquidatable now"
    drop = math.floor((1.0 - 1.0 / health_factor) * 1000) / 10
    return f"{drop:.1f}% from liquidation"


def position_name(reading: Reading) -> str:
    market = f" market {short_market(reading.key.market)}" if reading.key.market else ""
    return f"{reading.key.protocol}{market}"


def check_lines(readings: Iterable[Reading], thresholds_of: Callable[[Reading], Thresholds]) -> list[str]:
    """One line per position, worst first; positions with neither collateral nor debt are left out."""
    shown = sorted((r for r in readings if _holds_something(r)), key=lambda r: r.health_factor)
    lines = []
    for reading in shown:
        level = classify(reading.health_factor, None, thresholds_of(reading))
        flag = "" if level is Level.OK else f" [{level.name}]"
        lines.append(
            f"  {position_name(reading)}: health {format_health(reading.health_factor)} "
            f"({distance_to_liquidation(reading.health_factor)}){flag}"
        )
    return lines


def _holds_something(reading: Reading) -> bool:
    return reading.debt > 0 or (reading.collateral > 0 and not math.isnan(reading.collateral))


def rule_text(rule: ThresholdRule, label_of: dict[str, str | None]) -> str:
    scope = "all addresses" if rule.address == ANY else who(rule.address, label_of.get(rule.address))
    if rule.protocol != ANY:
        scope += f" on {rule.protocol}"
    if rule.market != ANY:
        scope += f" market {rule.market}"
    return f"  {scope}: warn {rule.warn:g}, critical {rule.critical:g}"


def mute_text(address: str, until: float | None, label_of: dict[str, str | None], now: float | None = None) -> str:
    scope = "all addresses" if address == ANY else who(address, label_of.get(address))
    if until is None:
        return f"  {scope}: muted until /unmute"
    left = max(0, int(until - (time.time() if now is None else now)))
    return f"  {scope}: muted for {format_duration(left)} more"


def format_duration(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{max(1, seconds // 60)}m"


def list_text(
    subscriptions: Sequence[Subscription], rules: Sequence[ThresholdRule], mutes: dict[str, float | None],
    defaults: Thresholds,
) -> str:  # fmt: skip
    if not subscriptions:
        return "You watch no address yet. Send /add ADDRESS [LABEL] to start."
    label_of = {s.address: s.label for s in subscriptions}
    lines = [f"Watched here ({len(subscriptions)}):"]
    for s in subscriptions:
        lines.append(f"  {who(s.address, s.label)}" + ("  [set by the operator]" if s.operator else ""))
    lines.append(f"Thresholds (default: warn {defaults.warn:g}, critical {defaults.critical:g}):")
    lines += [rule_text(rule, label_of) for rule in rules] or ["  none of your own"]
    if mutes:
        lines.append("Muted (LIQUIDATABLE still alerts):")
        lines += [mute_text(address, until, label_of) for address, until in mutes.items()]
    return "\n".join(lines)


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line ends where it can be."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # one line longer than a message: cut it hard
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = line if not current else f"{current}\n{line}"
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current or not parts:
        parts.append(current if current.strip() else "(empty)")
    return parts
