"""The per-position alert state machine: pure functions of the previous level and a new reading.

Worsening takes effect at once; improving needs the health factor to clear the threshold by a margin
(hysteresis), so a value hovering on a line does not flap. Only entering a worse level alerts, and
returning all the way to OK sends one recovery.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from chainwatch.model import AlertKind, Level, Reading, Record

LIQUIDATION = 1.0


class Thresholds(Record, frozen=True, kw_only=True):
    """Health-factor levels that raise alerts (`[alerts]`, or one watch's merged with it); below 1.0 is liquidatable."""

    warn: Annotated[float, Meta(gt=LIQUIDATION)] = 1.5
    critical: Annotated[float, Meta(gt=LIQUIDATION)] = 1.2
    # A level is left only once health is this fraction past its line, so a position hovering on it is quiet.
    hysteresis: Annotated[float, Meta(ge=0, lt=0.5)] = 0.02
    # After this many consecutive failed reads (a pull oracle reverting as stale, a broken market) the chat is
    # told once that the position cannot be priced, and again when it can: never taken for "healthy".
    unpriced_after: Annotated[int, Meta(ge=1, le=1000)] = 3

    def __post_init__(self) -> None:
        if not self.critical < self.warn:
            raise ValueError(f"critical ({self.critical}) must be below warn ({self.warn})")

    def line_of(self, level: Level) -> float:
        """The health factor below which a position is at `level` (OK's line is warn's: leaving it is a recovery)."""
        return {
            Level.LIQUIDATABLE: LIQUIDATION,
            Level.CRITICAL: self.critical,
            Level.WARN: self.warn,
            Level.OK: self.warn,
        }[level]


class Transition(Record, frozen=True, kw_only=True):
    level: Level
    alert: AlertKind | None
    threshold: float


def level_of(health_factor: float, thresholds: Thresholds, margin: float = 0.0) -> Level:
    """The level a health factor falls in, each line raised by `margin` (a fraction)."""
    scale = 1.0 + margin
    if health_factor < LIQUIDATION * scale:
        return Level.LIQUIDATABLE
    if health_factor < thresholds.critical * scale:
        return Level.CRITICAL
    if health_factor < thresholds.warn * scale:
        return Level.WARN
    return Level.OK


def classify(health_factor: float, previous: Level | None, thresholds: Thresholds) -> Level:
    plain = level_of(health_factor, thresholds)
    if previous is None or plain >= previous:
        return plain
    # Improving: the position stays at `previous` until it clears each line by the hysteresis margin.
    return max(plain, min(previous, level_of(health_factor, thresholds, thresholds.hysteresis)))


def next_state(previous: Level | None, reading: Reading, thresholds: Thresholds) -> Transition:
    """The position's new level, and the alert it causes (None when the user need not hear of it)."""
    level = classify(reading.health_factor, previous, thresholds)
    before = Level.OK if previous is None else previous
    if level > before:
        return Transition(level=level, alert=AlertKind.entering(level), threshold=thresholds.line_of(level))
    if level == Level.OK and before > Level.OK:
        return Transition(level=level, alert=AlertKind.RECOVERED, threshold=thresholds.warn)
    return Transition(level=level, alert=None, threshold=thresholds.line_of(level))
