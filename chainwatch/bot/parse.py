"""Arguments of the bot's commands, parsed and checked: pure functions from text to typed values.

A wrong argument raises `BadArguments` with one line that says what is wrong; the handler adds the usage.
Nothing here trusts its input: labels are length-limited and stripped of what would break a message or a
later `/list` (control characters, bidirectional overrides); everything else a user typed is kept as typed.
"""

from __future__ import annotations

import re
import unicodedata

from chainwatch.config import parse_address

MAX_LABEL = 32
MAX_ARGUMENT_ECHO = 40  # an argument quoted back in an error is cut to this
MAX_TARGET = 10.0

_DURATION = re.compile(r"(\d{1,6})([mhd])")
_SECONDS = {"m": 60, "h": 3600, "d": 86400}
_MAX_DURATION = 366 * 86400
_MARKET = re.compile(r"0x[0-9a-f]{4,64}(#\d{1,3})?")


class BadArguments(ValueError):
    """A command's arguments are wrong; the text says what, in one line."""


def quoted(text: str) -> str:
    """`text` fit to be echoed in a reply: short, one line, no invisible tricks."""
    cleaned = "".join(c if _visible(c) else "\N{REPLACEMENT CHARACTER}" for c in text)
    return repr(cleaned if len(cleaned) <= MAX_ARGUMENT_ECHO else cleaned[: MAX_ARGUMENT_ECHO - 1] + "…")


def looks_like_address(text: str) -> bool:
    return text.startswith(("0x", "0X")) and len(text) == 42


def address(text: str) -> str:
    """The EIP-55 address for `text`: any single case, or mixed case that is a valid checksum."""
    try:
        return parse_address(text)
    except ValueError:
        if looks_like_address(text) and re.fullmatch(r"0x[0-9a-fA-F]{40}", text):
            raise BadArguments(f"{quoted(text)} has a bad EIP-55 checksum (check for a typo, or write it all lower-case)") from None
        raise BadArguments(f"{quoted(text)} is not an address (0x followed by 40 hex digits)") from None


def label(words: list[str]) -> str | None:
    """A label from the words after the address: refused when it is too long or has nothing visible."""
    if not words:
        return None
    text = " ".join(words)
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\u200d" for c in text):
        # Control and format characters (zero-width spaces, right-to-left overrides) would make one label look
        # like another, or reorder the text around it in /list.
        raise BadArguments("a label may not contain control, zero-width or direction-changing characters")
    if looks_like_address(text) or text.lower() == "all":
        raise BadArguments("a label may not be an address or the word 'all'")
    if len(text) > MAX_LABEL:
        raise BadArguments(f"a label has at most {MAX_LABEL} characters (this one has {len(text)})")
    return text


def duration(text: str) -> int:
    """Seconds for `30m`, `2h`, `1d` (at most a year)."""
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        raise BadArguments(f"{quoted(text)} is not a duration (like 30m, 2h or 1d)")
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if not 0 < seconds <= _MAX_DURATION:
        raise BadArguments("a mute lasts from 1 minute to 366 days")
    return seconds


def health(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadArguments(f"{what} {quoted(text)} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadArguments(f"{what} must be a finite number")
    return value


def thresholds(warn_text: str, critical_text: str) -> tuple[float, float]:
    """(warn, critical), with 1.0 < CRITICAL < WARN <= 10."""
    warn, critical = health(warn_text, "WARN"), health(critical_text, "CRITICAL")
    if not 1.0 < critical < warn <= MAX_TARGET:
        raise BadArguments(f"thresholds need 1.0 < CRITICAL < WARN <= 10 (got WARN {warn:g}, CRITICAL {critical:g})")
    return warn, critical


def target(text: str) -> float:
    value = health(text, "TARGET")
    if not 1.0 < value <= MAX_TARGET:
        raise BadArguments(f"TARGET must be above 1.0 and at most 10 (got {value:g})")
    return value


def market(text: str) -> str:
    lowered = text.lower().split("…")[0]  # the shortened form the bot prints: its head is a prefix of the id
    if not _MARKET.fullmatch(lowered):
        raise BadArguments(f"{quoted(text)} is not a market (its address or id as the bot shows it, 0x…)")
    return lowered


def _visible(character: str) -> bool:
    return unicodedata.category(character) not in ("Cc", "Cf", "Zl", "Zp") or character == "\u200d"
