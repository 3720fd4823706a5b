"""Where a price block's time goes, stage by stage, measured by chainwatch itself so that a regression shows where.

One process-wide accumulator: the engine, the reader and the tracker add seconds to named stages while a block
is processed, and the engine takes the totals once the block is done (logged in its one per-block line, and
observed into a histogram per stage). Reads run concurrently, so `rpc` sums the time each chunk waited on the node
(it can exceed the wall time of the pass); the other stages run on the event loop and add up to wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("index", "encode", "rpc", "decode", "evaluate", "commit", "send")


class StageTimings:
    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def take(self) -> dict[str, float]:
        """The totals since the last take (in milliseconds, rounded for a log line), and a fresh start."""
        taken, self._seconds = self._seconds, {}
        return {f"{stage}_ms": round(1000 * seconds, 3) for stage, seconds in taken.items()}


TIMINGS = StageTimings()
