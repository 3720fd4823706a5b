"""LevelBook: the lowest stored health of an account's positions, kept right through every set and delete."""

from __future__ import annotations

import math
import random

from chainwatch.alerts.level_book import LevelBook
from chainwatch.model import Level, PositionKey
from chainwatch.store import ChatPosition, StoredLevel


def slot(chat: int, account: str, protocol: str = "aave", market: str = "") -> ChatPosition:
    return ChatPosition(chat_id=chat, key=PositionKey(protocol=protocol, account=account, market=market))


def stored(health: float, block: int = 1) -> StoredLevel:
    return StoredLevel(level=Level.OK, health_factor=health, block=block)


def test_the_lowest_health_is_over_every_chat_and_market_of_that_protocol_only() -> None:
    book = LevelBook({slot(1, "0xa"): stored(2.0), slot(2, "0xa", market="m"): stored(1.4),
                      slot(1, "0xa", protocol="morpho"): stored(1.1), slot(1, "0xb"): stored(1.2)})  # fmt: skip
    assert book.lowest_health("aave", "0xa") == 1.4
    assert book.lowest_health("morpho", "0xa") == 1.1
    assert book.lowest_health("aave", "0xc") == math.inf


def test_an_updated_or_deleted_slot_no_longer_counts() -> None:
    book = LevelBook({slot(1, "0xa"): stored(1.1), slot(2, "0xa"): stored(1.6)})
    book[slot(1, "0xa")] = stored(1.9)
    assert book.lowest_health("aave", "0xa") == 1.6
    del book[slot(2, "0xa")]
    assert book.lowest_health("aave", "0xa") == 1.9
    del book[slot(1, "0xa")]
    assert book.lowest_health("aave", "0xa") == math.inf
    assert len(book) == 0 and list(book) == []


def test_random_sets_and_deletes_agree_with_a_scan_of_every_level() -> None:
    rng = random.Random(7)
    book, plain = LevelBook({}), {}
    slots = [slot(c, a, p, m) for c in (1, 2) for a in ("0xa", "0xb", "0xc") for p in ("aave", "euler") for m in ("", "m")]
    for _ in range(2_000):
        chosen = rng.choice(slots)
        if chosen in plain and rng.random() < 0.4:
            del book[chosen], plain[chosen]
        else:
            book[chosen] = plain[chosen] = stored(rng.uniform(0.5, 3.0))
        for protocol in ("aave", "euler"):
            for account in ("0xa", "0xb", "0xc"):
                expected = min((s.health_factor for k, s in plain.items()
                                if k.key.protocol == protocol and k.key.account == account), default=math.inf)  # fmt: skip
                assert book.lowest_health(protocol, account) == expected
    assert dict(book.items()) == plain
