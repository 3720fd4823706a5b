"""The risk-tiered refresh schedule."""

import math

import pytest

from chainwatch.refresh import RefreshBand, RefreshPolicy, RefreshSchedule

POLICY = RefreshPolicy(
    every_blocks=100, bands=(RefreshBand(below=1.1, every_blocks=2), RefreshBand(below=1.5, every_blocks=10))
)


class TestPolicy:
    @pytest.mark.parametrize(
        ("health", "interval"), [(0.9, 2), (1.09, 2), (1.1, 10), (1.49, 10), (1.5, 100), (math.inf, 100)]
    )
    def test_closer_to_liquidation_reads_more_often(self, health: float, interval: int) -> None:
        """The interval is the first band the health factor is below, else the default."""
        assert POLICY.interval_for(health) == interval

    @pytest.mark.parametrize(
        "bands",
        [
            (RefreshBand(below=1.5, every_blocks=2), RefreshBand(below=1.1, every_blocks=10)),
            (RefreshBand(below=1.1, every_blocks=20), RefreshBand(below=1.5, every_blocks=10)),
            (RefreshBand(below=1.1, every_blocks=200),),
        ],
    )
    def test_inconsistent_bands_rejected(self, bands: tuple[RefreshBand, ...]) -> None:
        """Bands out of order, or a riskier band read less often, are a configuration error."""
        with pytest.raises(ValueError):
            RefreshPolicy(every_blocks=100, bands=bands)


class TestSchedule:
    def test_due_by_band(self) -> None:
        """A risky target comes due sooner than a safe one, and each comes due once."""
        schedule = RefreshSchedule(POLICY)
        schedule.record("risky", 10, 1.05)
        schedule.record("safe", 10, 3.0)
        assert schedule.due_at(11) == set()
        assert schedule.due_at(12) == {"risky"}
        assert schedule.due_at(50) == set()
        assert schedule.due_at(110) == {"safe"}

    def test_reading_again_resets_the_clock(self) -> None:
        """A target re-read because of an event is not due again at its old time."""
        schedule = RefreshSchedule(POLICY)
        schedule.record("a", 10, 1.2)  # due at 20
        schedule.record("a", 15, 1.2)  # re-read by an event: due at 25
        assert schedule.due_at(20) == set()
        assert schedule.due_at(25) == {"a"}
