"""Progress of long work (discovery, the first full read, a backfill): a log line at most every few seconds with
done / total, rate and time left, and the same figures as metrics, so a start-up at 100,000 positions is seen
advancing rather than silent."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from chainwatch import metrics

log = structlog.get_logger(__name__)


class Progress:
    def __init__(self, task: str, total: int, *, every: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.task, self.total = task, total
        self.done = 0
        self._every = every
        self._clock = clock
        self._started = self._last_line = clock()
        metrics.PROGRESS_TOTAL.labels(task).set(total)
        metrics.PROGRESS_DONE.labels(task).set(0)

    def advance(self, n: int = 1) -> None:
        self.done += n
        metrics.PROGRESS_DONE.labels(self.task).set(self.done)
        now = self._clock()
        if now - self._last_line >= self._every and self.done < self.total:
            self._last_line = now
            log.info("progress", **self.figures(now))

    def finish(self) -> None:
        log.info("progress.done", **self.figures(self._clock()))

    def figures(self, now: float) -> dict[str, object]:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        return {"task": self.task, "done": self.done, "total": self.total, "rate_per_second": round(rate, 1),
                "seconds_left": None if left is None else round(left, 1), "elapsed_seconds": round(elapsed, 1)}
