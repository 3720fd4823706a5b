"""Who watches what, and how each wants to hear of it: the operator's `[[watch]]` entries and every chat's own
watches, thresholds and mutes, merged into one immutable snapshot the tracker fans readings out with.

Pure: built from the config and the stored chat setup; rebuilt (not mutated) whenever either changes.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable

from chainwatch.alerts.state import Thresholds
from chainwatch.chat_settings import ANY, ChatSetup, Mute, ThresholdRule
from chainwatch.config import Config
from chainwatch.index import Target
from chainwatch.model import AlertKind, PositionKey, Record

# The operator's watches that have no chat: their alerts go to the transport's default destination.
NO_CHAT = 0


class Subscription(Record, frozen=True, kw_only=True):
    """One chat watching one address. `operator` ones come from the config file and cannot be changed from a
    chat; their thresholds are the watch's own (`thresholds`), never a chat's rules."""

    chat_id: int
    address: str
    label: str | None = None
    protocols: frozenset[str] | None = None  # None: every configured protocol
    operator: bool = False
    thresholds: Thresholds | None = None

    def covers(self, protocol: str) -> bool:
        return self.protocols is None or protocol in self.protocols


class Directory:
    """An immutable snapshot: subscriptions by address, and the lookups the tracker needs per (chat, position)."""

    def __init__(
        self,
        subscriptions: Iterable[Subscription],
        *,
        defaults: Thresholds,
        protocols: Iterable[str],
        rules: Iterable[ThresholdRule] = (),
        mutes: Iterable[Mute] = (),
        paused: frozenset[int] = frozenset(),
    ) -> None:
        self._defaults = defaults
        self._protocols = tuple(protocols)
        by_address: defaultdict[str, list[Subscription]] = defaultdict(list)
        for subscription in subscriptions:
            by_address[_shared(subscription.address)].append(subscription)
        # Tuples, and the address interned (shared with the levels' and the targets' copies): a list and a string
        # per watched address were ~15 MiB at 100,000 of them.
        self._by_address: dict[str, tuple[Subscription, ...]] = {a: tuple(subs) for a, subs in by_address.items()}
        self._rules: defaultdict[int, list[ThresholdRule]] = defaultdict(list)
        for rule in rules:
            self._rules[rule.chat_id].append(rule)
        self._mutes = {(mute.chat_id, mute.address): mute.until for mute in mutes}
        self._paused = paused

    def targets(self) -> frozenset[Target]:
        return frozenset(
            Target(protocol=protocol, account=address)
            for address, subscriptions in self._by_address.items()
            for protocol in self._protocols
            if any(s.covers(protocol) for s in subscriptions)
        )

    def subscribers(self, key: PositionKey) -> list[Subscription]:
        return [s for s in self._by_address.get(key.account, ()) if s.covers(key.protocol)]

    def subscriptions_of(self, chat_id: int) -> list[Subscription]:
        return [s for subs in self._by_address.values() for s in subs if s.chat_id == chat_id]

    def watched_by(self, chat_id: int, address: str) -> bool:
        return any(s.chat_id == chat_id for s in self._by_address.get(address, ()))

    def thresholds(self, subscription: Subscription, key: PositionKey) -> Thresholds:
        """Lookup order: market > protocol > address > chat (`all`) > the operator's watch or `[alerts]`."""
        if subscription.operator:
            return subscription.thresholds or self._defaults
        rule = best_rule(self._rules.get(subscription.chat_id, ()), key)
        if rule is None:
            return self._defaults
        return Thresholds(warn=rule.warn, critical=rule.critical, hysteresis=self._defaults.hysteresis)

    def rules_of(self, chat_id: int) -> list[ThresholdRule]:
        return list(self._rules.get(chat_id, ()))

    def silences(self, subscription: Subscription, kind: AlertKind, now: float) -> bool:
        """Whether an alert of `kind` is held back: a muted (or paused) chat hears only LIQUIDATABLE, and a paused
        chat nothing at all (Telegram refuses it)."""
        if subscription.chat_id in self._paused:
            return True
        if subscription.operator or kind is AlertKind.LIQUIDATABLE:
            return False
        return any(
            (subscription.chat_id, address) in self._mutes and _still(self._mutes[subscription.chat_id, address], now)
            for address in (subscription.address, ANY)
        )

    def mutes_of(self, chat_id: int, now: float) -> dict[str, float | None]:
        """This chat's mutes in force: address (ANY for all) -> until (None: until /unmute)."""
        return {address: until for (chat, address), until in self._mutes.items() if chat == chat_id and _still(until, now)}


def best_rule(rules: Iterable[ThresholdRule], key: PositionKey) -> ThresholdRule | None:
    """The most specific rule matching `key`: one naming the market beats one naming the protocol, beats one
    naming the address, beats the chat-wide one."""
    matching = [
        rule
        for rule in rules
        if rule.address in (ANY, key.account)
        and rule.protocol in (ANY, key.protocol)
        and (rule.market == ANY or key.market.lower().startswith(rule.market))
    ]
    return max(matching, key=lambda r: (r.market != ANY, r.protocol != ANY, r.address != ANY), default=None)


def _shared(address: str) -> str:
    """The one copy of an address string (a config's `Address`, a str subclass, cannot be interned: kept)."""
    return sys.intern(address) if type(address) is str else address


def _still(until: float | None, now: float) -> bool:
    return until is None or until > now


def build_directory(config: Config, setup: ChatSetup) -> Directory:
    """The operator's watches (exactly as configured) and every chat's, in one directory. A chat watching an
    address the operator already sends to that chat is the operator's watch, so it is alerted once."""
    operator = [
        Subscription(
            chat_id=config.chat_id_for(watch) or NO_CHAT,
            address=watch.address,
            label=watch.label,
            protocols=None if watch.protocols is None else frozenset(watch.protocols),
            operator=True,
            thresholds=config.thresholds_for(watch),
        )
        for watch in config.watch
    ]
    taken = {(s.chat_id, s.address) for s in operator}
    chats = [
        Subscription(chat_id=w.chat_id, address=_shared(w.address), label=w.label)
        for w in setup.watches
        if (w.chat_id, w.address) not in taken
    ]
    return Directory(
        [*operator, *chats],
        defaults=config.alerts,
        protocols=[p.name for p in config.protocols],
        rules=setup.rules,
        mutes=setup.mutes,
        paused=setup.paused,
    )
