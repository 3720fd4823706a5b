"""Progress lines of long work: at most one every few seconds, with done, total, rate and time left."""

from __future__ import annotations

from structlog.testing import capture_logs

from chainwatch.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_every_two_seconds_with_rate_and_time_left() -> None:
    """100 steps over 10 s log about one line per 2 s, each with the figures, and one closing line."""
    clock = Clock()
    with capture_logs() as logs:
        progress = Progress("first_read", 1000, clock=clock)
        for _ in range(100):
            clock.now += 0.1
            progress.advance(10)
        progress.finish()
    lines = [e for e in logs if e["event"] == "progress"]
    assert 4 <= len(lines) <= 5
    assert lines[0]["done"] == 200 and lines[0]["total"] == 1000
    assert lines[0]["rate_per_second"] == 100.0 and lines[0]["seconds_left"] == 8.0
    assert [e["done"] for e in logs if e["event"] == "progress.done"] == [1000]
