"""The health of each HTTP RPC endpoint: its request budget, its rest after a failure, and which one to ask next.

Failures are per endpoint, not per request: a dead primary is rested (exponential backoff with jitter, or the
`Retry-After` it sent) and skipped meanwhile, then given one probe request; only an answer brings it back. The
backoff is kept here rather than in a retry library (tenacity, stamina wrap one call's retries, not a state that
every concurrent request shares); aiolimiter's leaky bucket does the budget.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

from aiolimiter import AsyncLimiter

from chainwatch.config import HttpEndpoint

# The first rest after a failure; each further failure in a row doubles it, up to the cap. A node restarting or a
# provider shedding load is usually back within seconds; a dead one costs one request per cap.
FIRST_REST_SECONDS = 0.5
MAX_REST_SECONDS = 30.0
# A Retry-After beyond this is not believed (a misconfigured proxy would otherwise park an endpoint for hours).
MAX_RETRY_AFTER_SECONDS = 300.0
# Endpoints whose scores differ by less than this are equally good: the earlier in the config is asked. One failure
# adds 0.2 to the error score: a single one does not move traffic off a primary, a run of them (a flaky endpoint)
# does, and so does being a quarter of a second slower.
_SCORE_MARGIN = 0.25
_SMOOTHING = 0.2  # weight of the newest sample in the moving averages
_ERROR_HALF_LIFE_SECONDS = 60.0  # errors are forgotten with time too, or an endpoint out of favour stays out


def rest_seconds(failures_in_a_row: int, rng: random.Random) -> float:
    """How long to rest an endpoint after its n-th failure in a row: exponential, with jitter so that many
    processes behind one provider do not come back in step."""
    ceiling = min(MAX_REST_SECONDS, FIRST_REST_SECONDS * 2 ** (failures_in_a_row - 1))
    return rng.uniform(ceiling / 2, ceiling)


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """A `Retry-After` header's wait, in seconds (RFC 9110: a number of seconds or an HTTP date); None when it is
    absent or unreadable. `now` is wall-clock time, for the date form."""
    if header is None:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class Endpoint:
    """One configured endpoint: its budget, and whether and how well it has been answering."""

    def __init__(self, index: int, config: HttpEndpoint) -> None:
        self.index = index
        self.name = f"http_urls[{index}]"  # what logs, errors and metrics call it: the URL may hold an API key
        self.url = config.url
        self.timeout = config.timeout_seconds
        self.limiter = _budget(config.requests_per_second)
        self.failures_in_a_row = 0
        self.resting_until = 0.0  # monotonic
        self.probing = False  # a request is finding out whether a rested endpoint is back
        self._error_rate = 0.0  # moving average of 1 per failure, 0 per answer, as of _errors_at
        self._errors_at = 0.0
        self.latency = 0.0  # moving average of answered requests, seconds

    def healthy(self) -> bool:
        return self.failures_in_a_row == 0

    def due_for_probe(self, now: float) -> bool:
        """Failed, rested long enough, and no other request is probing it already."""
        return not self.healthy() and now >= self.resting_until and not self.probing

    def score(self, now: float) -> float:
        """Lower is better: recent errors (decaying with time) plus the mean latency in seconds."""
        return self._errors(now) + self.latency

    def _errors(self, now: float) -> float:
        return self._error_rate * 0.5 ** ((now - self._errors_at) / _ERROR_HALF_LIFE_SECONDS)

    def _record(self, now: float, sample: float) -> None:
        self._error_rate = self._errors(now) + _SMOOTHING * (sample - self._errors(now))
        self._errors_at = now

    def answered(self, latency: float, now: float | None = None) -> None:
        self.failures_in_a_row = 0
        self.resting_until = 0.0
        self.probing = False
        self._record(time.monotonic() if now is None else now, 0.0)
        self.latency += _SMOOTHING * (latency - self.latency)

    def failed(self, now: float, rng: random.Random, retry_after: float | None = None) -> float:
        """Rests the endpoint: for `retry_after` when it said so, else by the backoff; returns the rest."""
        self.failures_in_a_row += 1
        self.probing = False
        self._record(now, 1.0)
        rest = retry_after if retry_after is not None else rest_seconds(self.failures_in_a_row, rng)
        self.resting_until = now + rest
        return rest


def _budget(requests_per_second: float) -> AsyncLimiter:
    """One token per request, refilled at the budget's rate, with room for a one-second burst (one request, when
    the budget is below one a second: aiolimiter cannot hand out part of a token)."""
    if requests_per_second >= 1:
        return AsyncLimiter(requests_per_second, 1.0)
    return AsyncLimiter(1, 1.0 / requests_per_second)


class EndpointPool:
    """Picks the endpoint for each attempt; a request waits (bounded) when every endpoint is resting."""

    def __init__(self, configs: Sequence[HttpEndpoint], *, seed: int | None = None) -> None:
        self.endpoints = [Endpoint(i, config) for i, config in enumerate(configs)]
        self.rng = random.Random(seed)
        self._changed = asyncio.Event()

    async def take(self, deadline: float) -> Endpoint | None:
        """The endpoint for the next attempt, waiting while every one rests; None when none is usable before
        `deadline` (monotonic). A rested endpoint comes first, as a probe (one at a time): it is the only way it
        can show it is back. Otherwise the best healthy one, the earlier in the config among near equals."""
        while True:
            now = time.monotonic()
            if probe := next((e for e in self.endpoints if e.due_for_probe(now)), None):
                probe.probing = True
                return probe
            if healthy := [e for e in self.endpoints if e.healthy()]:
                best = min(e.score(now) for e in healthy)
                return next(e for e in healthy if e.score(now) <= best + _SCORE_MARGIN)
            resting = [e.resting_until for e in self.endpoints if not e.probing]
            wake = min(min(resting, default=deadline), deadline)
            if now >= deadline:
                return None
            # Woken early when an outcome changes the picture (a probe answered, another endpoint rested).
            self._changed.clear()
            try:
                async with asyncio.timeout(max(wake - now, 0.0)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def settled(self) -> None:
        """An attempt ended: requests waiting for an endpoint look again."""
        self._changed.set()
