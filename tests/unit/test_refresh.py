"""The risk-tiered refresh schedule."""

import math

import pytest

from chainwatch.refresh import RefreshBand, RefreshPolicy, RefreshSchedule

POLICY = RefreshPolicy(
    every_blocks=100, bands=(RefreshBand(below=1.1, every_blocks=2), RefreshBand(below=1.5, every_blocks=10)),
    spread=0,  # exact due blocks; the spread has its own test
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


class TestFailureBackoff:
    @staticmethod
    def next_due(schedule: RefreshSchedule, start: int) -> int:
        return next(block for block in range(start, start + 1000) if schedule.due_at(block))

    def test_consecutive_failures_back_off_exponentially_up_to_every_blocks(self) -> None:
        """Each failure in a row doubles the wait from the tightest band (2, 4, 8, ...), never beyond 100."""
        schedule, block, waits = RefreshSchedule(POLICY), 0, []
        for _ in range(8):
            schedule.record_failure("t", block)
            due = self.next_due(schedule, block + 1)
            waits.append(due - block)
            block = due
        assert waits == [2, 4, 8, 16, 32, 64, 100, 100]

    def test_a_full_read_resets_the_backoff(self) -> None:
        """After a good read, the next failure waits the shortest time again."""
        schedule = RefreshSchedule(POLICY)
        for block in (0, 2, 6):
            schedule.record_failure("t", block)
        schedule.record("t", 20, math.inf)
        schedule.record_failure("t", 30)
        assert self.next_due(schedule, 31) == 32

    def test_partly_unread_is_due_at_the_sooner_of_band_and_backoff(self) -> None:
        """A healthy target with one unreadable market is tried again by its backoff; a risky one by its band."""
        schedule = RefreshSchedule(POLICY)
        for block in (0, 2, 6):
            schedule.record("healthy", block, math.inf, partly_unread=True)
            assert self.next_due(schedule, block + 1) == block + 2 ** (1 + [0, 2, 6].index(block))
        schedule.record("risky", 0, 1.0, partly_unread=True)
        schedule.record("risky", 2, 1.0, partly_unread=True)
        assert self.next_due(schedule, 3) == 4  # band 2 is sooner than its backoff of 4


class TestSpread:
    def test_targets_read_together_come_due_over_a_spread_of_blocks(self) -> None:
        """1,000 targets read at one block are due between 75 and 100 blocks later, no block with more than a
        small share of them, and each target always at the same offset."""
        import collections

        policy = RefreshPolicy(every_blocks=100, bands=())
        schedule = RefreshSchedule(policy)
        for i in range(1000):
            schedule.record(f"t{i}", 0, 3.0)
        per_block = collections.Counter()
        for block in range(0, 101):
            per_block[block] = len(schedule.due_at(block))
        assert sum(per_block.values()) == 1000
        assert set(b for b, n in per_block.items() if n) <= set(range(75, 101))
        assert max(per_block.values()) < 100  # spread over ~26 blocks: about 40 each, never all on one
        dues = []
        for _ in range(2):  # a fresh schedule (a restart) puts the same target at the same offset
            again = RefreshSchedule(policy)
            again.record("t7", 0, 3.0)
            dues.append(next(b for b in range(101) if again.due_at(b)))
        assert dues[0] == dues[1]
