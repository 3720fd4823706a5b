"""Who hears what: the directory's threshold lookup order, mutes, paused chats and operator watches."""

from __future__ import annotations

import pytest

from chainwatch.alerts.directory import Directory, Subscription
from chainwatch.alerts.state import Thresholds
from chainwatch.chat_settings import ANY, Mute, ThresholdRule
from chainwatch.index import Target
from chainwatch.model import AlertKind, PositionKey

A, B = "0x" + "aa" * 20, "0x" + "bb" * 20
DEFAULTS = Thresholds(warn=1.5, critical=1.2)
MARKET = "0x" + "12" * 32


def rule(warn: float, *, address: str = ANY, protocol: str = ANY, market: str = ANY, chat: int = 1) -> ThresholdRule:
    return ThresholdRule(chat_id=chat, address=address, protocol=protocol, market=market, warn=warn, critical=1.1)


def directory(*rules: ThresholdRule, mutes: tuple[Mute, ...] = (), paused: frozenset[int] = frozenset()) -> Directory:
    subscriptions = [Subscription(chat_id=1, address=A), Subscription(chat_id=2, address=A),
                     Subscription(chat_id=1, address=B, protocols=frozenset({"aave"}))]  # fmt: skip
    return Directory(subscriptions, defaults=DEFAULTS, protocols=["aave", "morpho"], rules=rules, mutes=mutes,
                     paused=paused)  # fmt: skip


class TestThresholdLookup:
    KEY = PositionKey(protocol="morpho", account=A, market=MARKET)
    ALL_LEVELS = (rule(2.0), rule(3.0, address=A), rule(4.0, address=A, protocol="morpho"),
                  rule(5.0, address=A, protocol="morpho", market=MARKET[:12]))  # fmt: skip

    @pytest.mark.parametrize("levels, expected", [(4, 5.0), (3, 4.0), (2, 3.0), (1, 2.0), (0, 1.5)])
    def test_market_beats_protocol_beats_address_beats_chat_beats_defaults(self, levels: int, expected: float) -> None:
        """The most specific rule set wins; with none, [alerts] applies."""
        d = directory(*self.ALL_LEVELS[:levels])
        assert d.thresholds(Subscription(chat_id=1, address=A), self.KEY).warn == expected

    def test_a_chats_rules_never_reach_another_chat(self) -> None:
        """Chat 1's rule leaves chat 2 on the defaults."""
        d = directory(rule(3.0, address=A))
        assert d.thresholds(Subscription(chat_id=2, address=A), self.KEY).warn == 1.5

    def test_rule_of_another_protocol_or_market_does_not_match(self) -> None:
        """A rule naming aave, or another market, does not apply to this morpho market."""
        d = directory(rule(3.0, address=A, protocol="aave"), rule(4.0, address=A, protocol="morpho", market="0xdead"))
        assert d.thresholds(Subscription(chat_id=1, address=A), self.KEY).warn == 1.5

    def test_operator_watches_keep_their_configured_thresholds(self) -> None:
        """An operator's watch ignores chat rules: it cannot be changed from a chat."""
        mine = Thresholds(warn=1.9, critical=1.3)
        d = directory(rule(3.0))
        assert d.thresholds(Subscription(chat_id=1, address=A, operator=True, thresholds=mine), self.KEY) == mine


class TestSilences:
    SUB = Subscription(chat_id=1, address=A)

    @pytest.mark.parametrize("kind", [AlertKind.WARN, AlertKind.CRITICAL, AlertKind.RECOVERED])
    def test_mute_holds_back_everything_but_liquidatable(self, kind: AlertKind) -> None:
        """A muted address hears no WARN, CRITICAL or RECOVERED."""
        d = directory(mutes=(Mute(chat_id=1, address=A, until=None),))
        assert d.silences(self.SUB, kind, now=0.0)
        assert not d.silences(self.SUB, AlertKind.LIQUIDATABLE, now=0.0)

    def test_mute_all_and_expiry(self) -> None:
        """`all` mutes every address of the chat until its time passes; other chats are not muted."""
        d = directory(mutes=(Mute(chat_id=1, address=ANY, until=100.0),))
        assert d.silences(self.SUB, AlertKind.WARN, now=99.0)
        assert not d.silences(self.SUB, AlertKind.WARN, now=100.0)
        assert not d.silences(Subscription(chat_id=2, address=A), AlertKind.WARN, now=0.0)

    def test_paused_chat_hears_nothing(self) -> None:
        """A chat that blocked the bot is sent nothing, not even LIQUIDATABLE, until it writes again."""
        d = directory(paused=frozenset({1}))
        assert d.silences(self.SUB, AlertKind.LIQUIDATABLE, now=0.0)


class TestTargets:
    def test_an_address_watched_by_two_chats_is_one_target_per_protocol(self) -> None:
        """A is read once per pass however many chats watch it; B only on the protocol its watch names."""
        assert directory().targets() == {
            Target(protocol="aave", account=A), Target(protocol="morpho", account=A), Target(protocol="aave", account=B)
        }

    def test_subscribers_fan_out_by_protocol(self) -> None:
        """Both chats hear of A on morpho; only chat 1 watches B, and only on aave."""
        d = directory()
        assert [s.chat_id for s in d.subscribers(PositionKey(protocol="morpho", account=A))] == [1, 2]
        assert d.subscribers(PositionKey(protocol="morpho", account=B)) == []
