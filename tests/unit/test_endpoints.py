"""Endpoint health: how long a failure rests an endpoint, what a Retry-After means, which endpoint is asked."""

from __future__ import annotations

import random
import time
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from chainwatch.config import HttpEndpoint
from chainwatch.endpoints import MAX_REST_SECONDS, MAX_RETRY_AFTER_SECONDS, EndpointPool, rest_seconds, retry_after_seconds

NOW = 1_800_000_000.0


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [("1", 1.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("99999", MAX_RETRY_AFTER_SECONDS), (None, None),
         ("soon", None), ("nan", None)],
    )  # fmt: skip
    def test_seconds(self, header: str | None, expected: float | None) -> None:
        """A number of seconds is taken as is, clamped to [0, the cap]; anything unreadable is None."""
        assert retry_after_seconds(header, NOW) == expected

    def test_http_date(self) -> None:
        """An HTTP date means the seconds from now until then."""
        header = format_datetime(datetime.fromtimestamp(NOW + 7, tz=timezone.utc), usegmt=True)
        assert retry_after_seconds(header, NOW) == pytest.approx(7.0)

    def test_http_date_in_the_past_is_now(self) -> None:
        """A date already gone means: ask again now."""
        header = format_datetime(datetime.fromtimestamp(NOW - 60, tz=timezone.utc), usegmt=True)
        assert retry_after_seconds(header, NOW) == 0.0


class TestRest:
    @pytest.mark.parametrize("failures", [1, 2, 3, 8, 30])
    def test_doubles_up_to_the_cap_with_jitter(self, failures: int) -> None:
        """The n-th failure in a row rests between half and all of min(cap, 0.5 s * 2^(n-1))."""
        ceiling = min(MAX_REST_SECONDS, 0.5 * 2 ** (failures - 1))
        rests = [rest_seconds(failures, random.Random(seed)) for seed in range(50)]
        assert all(ceiling / 2 <= rest <= ceiling for rest in rests)
        assert len(set(rests)) > 1  # jittered: processes behind one provider do not come back in step


def pool(count: int) -> EndpointPool:
    return EndpointPool([HttpEndpoint(url=f"http://127.0.0.1:{i + 1}/") for i in range(count)], seed=1)


class TestPool:
    async def test_prefers_the_first_of_equals(self) -> None:
        """With no history, the first endpoint in the config is asked."""
        assert (await pool(2).take(time.monotonic() + 1)).index == 0  # type: ignore[union-attr]

    async def test_a_failed_endpoint_is_skipped_while_it_rests(self) -> None:
        """After a failure the next endpoint is asked, until the rest is over."""
        endpoints = pool(2)
        first = endpoints.endpoints[0]
        first.failed(time.monotonic(), endpoints.rng, retry_after=60.0)
        chosen = [await endpoints.take(time.monotonic() + 1) for _ in range(3)]
        assert [e.index for e in chosen] == [1, 1, 1]  # type: ignore[union-attr]

    async def test_one_probe_after_the_rest_then_back_in_use(self) -> None:
        """A rested endpoint gets one probe at a time; once it answers, it is preferred again."""
        endpoints = pool(2)
        first = endpoints.endpoints[0]
        first.failed(time.monotonic(), endpoints.rng, retry_after=0.0)
        probe = await endpoints.take(time.monotonic() + 1)
        others = [await endpoints.take(time.monotonic() + 1) for _ in range(2)]
        assert probe is first and first.probing
        assert [e.index for e in others] == [1, 1]  # type: ignore[union-attr]
        first.answered(0.01)
        assert await endpoints.take(time.monotonic() + 1) is first

    async def test_every_endpoint_resting_past_the_deadline_gives_none(self) -> None:
        """When no endpoint will be usable before the deadline, the request is told so instead of waiting on."""
        endpoints = pool(1)
        endpoints.endpoints[0].failed(time.monotonic(), endpoints.rng, retry_after=60.0)
        assert await endpoints.take(time.monotonic() + 0.05) is None

    async def test_an_endpoint_with_many_recent_errors_loses_its_turn(self) -> None:
        """An endpoint that keeps failing (then answering) ranks below a clean one, though earlier in the config."""
        endpoints = pool(2)
        flaky = endpoints.endpoints[0]
        for _ in range(3):
            flaky.failed(time.monotonic(), endpoints.rng, retry_after=0.0)
            flaky.answered(0.01)
        assert (await endpoints.take(time.monotonic() + 1)).index == 1  # type: ignore[union-attr]
