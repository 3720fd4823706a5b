"""The alert state machine: thresholds, hysteresis, which transitions alert."""

import math

import pytest

from chainwatch.alerts.state import Thresholds, classify, level_of, next_state
from chainwatch.model import AlertKind, Level, PositionKey, Reading

LIMITS = Thresholds(warn=1.5, critical=1.2, hysteresis=0.02)


def reading(health: float, block: int = 10) -> Reading:
    return Reading(key=PositionKey(protocol="p", account="0xA"), block=block, health_factor=health, collateral=1, debt=1)


class TestLevelOf:
    @pytest.mark.parametrize(
        ("health", "level"),
        [
            (math.inf, Level.OK),
            (1.5, Level.OK),
            (1.4999, Level.WARN),
            (1.2, Level.WARN),
            (1.1999, Level.CRITICAL),
            (1.0, Level.CRITICAL),
            (0.9999, Level.LIQUIDATABLE),
            (0.0, Level.LIQUIDATABLE),
        ],
    )
    def test_plain_thresholds(self, health: float, level: Level) -> None:
        """A health factor falls in the level whose line it is below; on the line is the better level."""
        assert level_of(health, LIMITS) == level


class TestHysteresis:
    @pytest.mark.parametrize(
        ("previous", "health", "expected"),
        [
            (Level.WARN, 1.51, Level.WARN),  # above warn but within 2%: stays
            (Level.WARN, 1.53, Level.OK),  # clears 1.5 * 1.02
            (Level.CRITICAL, 1.21, Level.CRITICAL),
            (Level.CRITICAL, 1.225, Level.WARN),
            (Level.CRITICAL, 1.6, Level.OK),
            (Level.LIQUIDATABLE, 1.01, Level.LIQUIDATABLE),
            (Level.LIQUIDATABLE, 1.03, Level.CRITICAL),
            (Level.OK, 1.49, Level.WARN),  # worsening is immediate
            (Level.WARN, 0.5, Level.LIQUIDATABLE),
        ],
    )
    def test_improving_needs_margin(self, previous: Level, health: float, expected: Level) -> None:
        """Improving requires clearing a line by the margin; worsening takes effect at once."""
        assert classify(health, previous, LIMITS) == expected

    def test_hovering_does_not_flap(self) -> None:
        """A value oscillating across the warn line alerts once, not on every crossing."""
        previous = None
        alerts = []
        for health in [1.6, 1.499, 1.501, 1.498, 1.505, 1.499]:
            transition = next_state(previous, reading(health), LIMITS)
            previous = transition.level
            alerts.append(transition.alert)
        assert [a for a in alerts if a is not None] == [AlertKind.WARN]


class TestNextState:
    @pytest.mark.parametrize(
        ("previous", "health", "alert", "threshold"),
        [
            (None, 2.0, None, 1.5),
            (None, 1.3, AlertKind.WARN, 1.5),  # first sight of a risky position is news
            (Level.OK, 1.1, AlertKind.CRITICAL, 1.2),
            (Level.WARN, 1.1, AlertKind.CRITICAL, 1.2),
            (Level.CRITICAL, 0.96, AlertKind.LIQUIDATABLE, 1.0),
            (Level.CRITICAL, 1.1, None, 1.2),  # same level: silent
            (Level.CRITICAL, 1.3, None, 1.5),  # better but not OK: silent
            (Level.CRITICAL, 2.0, AlertKind.RECOVERED, 1.5),
            (Level.WARN, math.inf, AlertKind.RECOVERED, 1.5),  # debt repaid
            (Level.OK, 3.0, None, 1.5),
        ],
    )
    def test_alerts_only_on_worse_or_recovery(self, previous, health, alert, threshold) -> None:
        """Only entering a worse level or returning to OK produces an alert, with the line crossed."""
        transition = next_state(previous, reading(health), LIMITS)
        assert transition.alert == alert
        if alert is not None:
            assert transition.threshold == threshold


class TestMessage:
    def test_names_everything_a_user_needs(self) -> None:
        """The text names state, protocol, market (ids cut), account and label, health, line, amounts, block."""
        from chainwatch.alerts.message import alert_text
        from chainwatch.model import Alert

        market = "0x" + "ab" * 32
        reading = Reading(
            key=PositionKey(protocol="morpho", account="0xA", market=market), block=42, health_factor=0.9766,
            collateral=1250, debt=1100, currency="USDC", liquidation_price=1279.07, liquidation_asset="WETH",
        )  # fmt: skip
        text = alert_text(Alert(kind=AlertKind.LIQUIDATABLE, reading=reading, threshold=1.0, label="<b>me</b>"))
        assert text.splitlines() == [
            "\U0001f6a8 LIQUIDATABLE on morpho market 0xabababab…abab",
            "Account 0xA (<b>me</b>)",
            "Health factor 0.976 (below liquidation line 1.000)",  # rounded down, never up
            "Collateral 1,250.00 USDC | Debt 1,100.00 USDC",
            "Liquidation price WETH 1,279.07 USDC",
            "Block 42",
        ]


class TestHealthShown:
    @pytest.mark.parametrize(
        ("health", "shown"),
        [(0.9996, "0.999"), (0.99999999, "0.999"), (1.1, "1.100"), (1.1339, "1.133"), (2.0, "2.000"),
         (float("inf"), "no debt"), (1e-9, "0.000")],
    )  # fmt: skip
    def test_rounded_down(self, health: float, shown: str) -> None:
        """Health factors are cut to three decimals, never rounded up: a liquidatable 0.9996 never reads 1.000."""
        from chainwatch.alerts.message import format_health

        assert format_health(health) == shown

