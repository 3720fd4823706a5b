"""The rate limiter's arithmetic: bot-wide token bucket, per-chat interval, pauses."""

from __future__ import annotations

import pytest

from chainwatch.alerts.ratelimit import RateLimiter


def limiter(per_second: float = 25, interval: float = 1.0, burst: float = 1.0) -> RateLimiter:
    return RateLimiter(per_second=per_second, per_chat_interval=interval, burst=burst)


class TestGlobalRate:
    def test_first_send_is_free(self) -> None:
        """A fresh limiter lets any chat send at once."""
        assert limiter().delay_for(1, now=100.0) == 0.0

    @pytest.mark.parametrize(
        ("per_second", "elapsed", "expected"),
        [(25, 0.0, 0.04), (25, 0.01, 0.03), (25, 0.04, 0.0), (10, 0.05, 0.05), (2, 0.0, 0.5), (2, 1.0, 0.0)],
    )
    def test_next_send_waits_for_a_token(self, per_second: float, elapsed: float, expected: float) -> None:
        """After one send, another chat waits 1/rate minus the time already passed."""
        rl = limiter(per_second=per_second)
        rl.record(1, now=10.0)
        assert rl.delay_for(2, now=10.0 + elapsed) == pytest.approx(expected)

    @pytest.mark.parametrize("burst", [1, 3, 5])
    def test_burst_allows_that_many_back_to_back(self, burst: float) -> None:
        """With a bucket of `burst` tokens, that many distinct chats send at once, the next waits."""
        rl = limiter(per_second=10, burst=burst)
        for chat in range(int(burst)):
            assert rl.delay_for(chat, now=0.0) == 0.0
            rl.record(chat, now=0.0)
        assert rl.delay_for(99, now=0.0) == pytest.approx(0.1)

    @pytest.mark.parametrize("per_second", [25, 30, 7.5])
    def test_sustained_rate_is_capped(self, per_second: float) -> None:
        """Sending whenever allowed over 10 s never exceeds the rate (plus the burst)."""
        rl = limiter(per_second=per_second, interval=0.0)
        now, sent = 0.0, 0
        while now < 10.0:
            now += rl.delay_for(sent, now)
            rl.record(sent, now)
            sent += 1
        assert sent <= per_second * 10 + 1

    def test_idle_time_refills_no_more_than_burst(self) -> None:
        """A long idle spell does not bank more than `burst` tokens."""
        rl = limiter(per_second=10, burst=2)
        rl.record(1, now=0.0)
        rl.record(2, now=1000.0)
        rl.record(3, now=1000.0)
        assert rl.delay_for(4, now=1000.0) == pytest.approx(0.1)


class TestPerChatInterval:
    @pytest.mark.parametrize(
        ("interval", "elapsed", "expected"),
        [(1.0, 0.0, 1.0), (1.0, 0.25, 0.75), (1.0, 1.0, 0.0), (1.0, 3.0, 0.0), (3.0, 1.0, 2.0)],
    )
    def test_same_chat_waits_the_interval(self, interval: float, elapsed: float, expected: float) -> None:
        """A chat that just received waits out the interval since its last send."""
        rl = limiter(per_second=1000, interval=interval)
        rl.record(7, now=50.0)
        assert rl.delay_for(7, now=50.0 + elapsed) == pytest.approx(expected)

    def test_other_chat_is_not_held_by_a_cooling_chat(self) -> None:
        """Chat 8 only waits for the bucket while chat 7 cools down."""
        rl = limiter(per_second=25, interval=1.0)
        rl.record(7, now=0.0)
        assert rl.delay_for(8, now=0.04) == 0.0
        assert rl.delay_for(7, now=0.04) == pytest.approx(0.96)

    @pytest.mark.parametrize("chat", [None, "default", -100123, 0])
    def test_any_hashable_key_is_a_chat(self, chat: object) -> None:
        """Keys are opaque: the sender's key for the default chat works like a number."""
        rl = limiter(per_second=1000)
        rl.record(chat, now=0.0)  # type: ignore[arg-type]
        assert rl.delay_for(chat, now=0.5) == pytest.approx(0.5)  # type: ignore[arg-type]


class TestPause:
    @pytest.mark.parametrize(("now", "expected"), [(0.0, 5.0), (4.5, 0.5), (5.0, 0.0), (9.0, 0.0)])
    def test_paused_chat_waits_until_the_pause_ends(self, now: float, expected: float) -> None:
        """A 429's retry_after holds that chat only."""
        rl = limiter(per_second=1000)
        rl.pause(7, until=5.0)
        assert rl.delay_for(7, now=now) == pytest.approx(expected)
        assert rl.delay_for(8, now=now) == 0.0

    def test_pause_of_none_holds_every_chat(self) -> None:
        """A bot-wide pause holds chats that never sent."""
        rl = limiter()
        rl.pause(None, until=3.0)
        assert [rl.delay_for(c, now=1.0) for c in (1, 2, "default")] == [pytest.approx(2.0)] * 3

    @pytest.mark.parametrize("chat", [7, None])
    def test_shorter_pause_does_not_shorten_a_longer_one(self, chat: int | None) -> None:
        """Pauses only ever extend."""
        rl = limiter(per_second=1000)
        rl.pause(chat, until=10.0)
        rl.pause(chat, until=2.0)
        assert rl.delay_for(7, now=1.0) == pytest.approx(9.0)

    def test_delay_is_the_largest_constraint(self) -> None:
        """Interval, bucket and pause combine by max, not sum."""
        rl = limiter(per_second=1, interval=2.0)
        rl.record(7, now=0.0)
        rl.pause(None, until=1.5)
        assert rl.delay_for(7, now=0.0) == pytest.approx(2.0)
        assert rl.delay_for(8, now=0.0) == pytest.approx(1.5)



class TestBotDelay:
    @pytest.mark.parametrize(("elapsed", "expected"), [(0.0, 0.04), (0.03, 0.01), (0.04, 0.0), (1.0, 0.0)])
    def test_waits_for_the_bucket(self, elapsed: float, expected: float) -> None:
        """After a send, any message waits for the bot-wide token, whatever its chat."""
        rl = limiter(per_second=25)
        rl.record(1, now=10.0)
        assert rl.bot_delay(now=10.0 + elapsed) == pytest.approx(expected)

    def test_waits_for_a_pause_of_every_chat_but_not_of_one(self) -> None:
        """A pause of None holds the whole bot; a pause of one chat leaves the bot free."""
        rl = limiter(per_second=1000)
        rl.pause(7, until=5.0)
        assert rl.bot_delay(now=1.0) == 0.0
        rl.pause(None, until=3.0)
        assert rl.bot_delay(now=1.0) == pytest.approx(2.0)

    def test_ignores_a_cooling_chat(self) -> None:
        """The per-chat interval is no bot-wide limit."""
        rl = limiter(per_second=1000, interval=5.0)
        rl.record(7, now=0.0)
        assert rl.bot_delay(now=1.0) == 0.0 and rl.delay_for(7, now=1.0) == pytest.approx(4.0)

    @pytest.mark.parametrize("now", [0.0, 0.02, 0.5, 1.4, 3.0])
    def test_no_chat_waits_less(self, now: float) -> None:
        """Every chat's delay is at least the bot's: what lets the sender skip asking chat by chat."""
        rl = limiter(per_second=10, interval=1.0)
        rl.record(1, now=0.0)
        rl.pause(2, until=2.0)
        rl.pause(None, until=1.2)
        assert all(rl.delay_for(chat, now=now) >= rl.bot_delay(now=now) for chat in (1, 2, 3))


@pytest.mark.parametrize(
    "kwargs",
    [dict(per_second=0, per_chat_interval=1), dict(per_second=1, per_chat_interval=-1),
     dict(per_second=1, per_chat_interval=1, burst=0.5)],
)
def test_nonsense_limits_are_refused(kwargs: dict[str, float]) -> None:
    """A zero rate would wait forever; refuse it at construction."""
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)
