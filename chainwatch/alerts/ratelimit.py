"""Telegram's sending limits as pure arithmetic: a token bucket for the whole bot, a minimum gap per chat, pauses.

Nothing here sleeps or reads a clock: every call takes `now` (one monotonic clock, in seconds), so the sender
decides when to wait and the tests decide what time it is.
"""

from __future__ import annotations

from collections.abc import Hashable

# Below this a delay is float noise left over from waiting exactly the delay we were given.
_EPSILON = 1e-9


class RateLimiter:
    """How long a send to a chat must wait: the bot-wide rate, the per-chat interval and any pause, combined.

    `chat` is any hashable key the caller uses for a destination; `None` is reserved by `pause` for "every chat".
    """

    def __init__(self, *, per_second: float, per_chat_interval: float, burst: float = 1.0) -> None:
        if per_second <= 0 or burst < 1 or per_chat_interval < 0:
            raise ValueError("per_second must be > 0, burst >= 1 and per_chat_interval >= 0")
        self._rate = per_second
        self._burst = burst
        self._interval = per_chat_interval
        self._tokens = burst
        self._tokens_at: float | None = None
        self._last_send: dict[Hashable, float] = {}
        self._paused: dict[Hashable, float] = {}
        self._all_paused_until = float("-inf")

    def delay_for(self, chat: Hashable, now: float) -> float:
        """Seconds until a message to `chat` may go; 0.0 when it may go now."""
        last = self._last_send.get(chat)
        spacing = 0.0 if last is None else last + self._interval - now
        paused = self._paused.get(chat, float("-inf")) - now
        delay = max(self.bot_delay(now), spacing, paused, 0.0)
        return 0.0 if delay <= _EPSILON else delay

    def bot_delay(self, now: float) -> float:
        """Seconds until the bot-wide limits (the rate, a pause of every chat) let any message go; 0.0 when they do.

        No chat's `delay_for` is ever shorter: while this is above 0, asking chat by chat is wasted work."""
        bucket = (1.0 - self._tokens_at_time(now)) / self._rate
        delay = max(bucket, self._all_paused_until - now, 0.0)
        return 0.0 if delay <= _EPSILON else delay

    def record(self, chat: Hashable, now: float) -> None:
        """Counts one send to `chat` at `now` against both limits."""
        self._tokens = self._tokens_at_time(now) - 1.0
        self._tokens_at = now
        self._last_send[chat] = now
        # Forget chats whose interval has passed, so the map holds only chats that are cooling down.
        if len(self._last_send) > 1024:
            self._last_send = {c: t for c, t in self._last_send.items() if t + self._interval > now}

    def pause(self, chat: Hashable | None, until: float) -> None:
        """Holds `chat` (or, with `None`, every chat) until `until`; a shorter pause never shortens a longer one."""
        if chat is None:
            self._all_paused_until = max(self._all_paused_until, until)
        else:
            self._paused[chat] = max(self._paused.get(chat, float("-inf")), until)

    def _tokens_at_time(self, now: float) -> float:
        if self._tokens_at is None:
            return self._tokens
        return min(self._burst, self._tokens + max(0.0, now - self._tokens_at) * self._rate)
