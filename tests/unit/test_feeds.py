"""Price feeds: which log moved which source, and following feed addresses through every known shape."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from structlog.testing import capture_logs

from chainwatch.abi import calldata, event_topic
from chainwatch.chain import Log
from chainwatch.feeds import PriceSource, answer_of, follow_feeds, price_source_of, reroutes
from chainwatch.index import ExposureIndex, Target
from chainwatch.multicall import Call, CallResult

PROXY, AGGREGATOR, RATIO, BASE = "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20, "0x" + "04" * 20
COMPOSITE, REDSTONE_FEED, ADAPTER = "0x" + "05" * 20, "0x" + "06" * 20, "0x" + "07" * 20
PYTH_FEED, PYTH, BROKEN, EULER_ADAPTER = "0x" + "08" * 20, "0x" + "09" * 20, "0x" + "0a" * 20, "0x" + "0b" * 20
ETH_ID, BTC_ID = "0x" + "45544800".ljust(64, "0"), "0x" + "42544300".ljust(64, "0")
FAILED = CallResult(success=False, data=b"")
ROUND = CallResult(success=True, data=encode(["uint80", "int256", "uint256", "uint256", "uint80"], [1, 1, 1, 1, 1]))


def address(value: str) -> CallResult:
    return CallResult(success=True, data=encode(["address"], [value]))


def word(value: str) -> CallResult:
    return CallResult(success=True, data=bytes.fromhex(value[2:]))


class TableReader:
    """The chain as (target, calldata) -> result; anything else reverts, as a missing function does."""

    def __init__(self, answers: dict[tuple[str, str], CallResult]) -> None:
        self.answers = {(target.lower(), calldata(function)): result for (target, function), result in answers.items()}
        self.batches = 0

    async def read(self, calls: Sequence[Call], block: int) -> list[CallResult]:
        self.batches += 1
        return [self.answers.get((call.target.lower(), call.data), FAILED) for call in calls]


CHAIN = {
    (PROXY, "aggregator()"): address(AGGREGATOR), (PROXY, "latestRoundData()"): ROUND,
    (AGGREGATOR, "latestRoundData()"): ROUND,
    (COMPOSITE, "ratioFeed()"): address(RATIO), (COMPOSITE, "baseFeed()"): address(PROXY),
    (COMPOSITE, "latestRoundData()"): ROUND, (RATIO, "latestRoundData()"): ROUND,
    (REDSTONE_FEED, "getPriceFeedAdapter()"): address(ADAPTER), (REDSTONE_FEED, "getDataFeedId()"): word(ETH_ID),
    (REDSTONE_FEED, "latestRoundData()"): ROUND,
    (PYTH_FEED, "pyth()"): address(PYTH), (PYTH_FEED, "priceId()"): word(BTC_ID),
    (EULER_ADAPTER, "feed()"): address(COMPOSITE),
    (BROKEN, "aggregator()"): FAILED,
}  # fmt: skip


def log(emitter: str, topics: Sequence[str], data: bytes = b"") -> Log:
    return Log(address=emitter, topics=tuple(topics), data=data, block_number=3, block_hash="0x01", log_index=0,
               transaction_hash="0x02")  # fmt: skip


class TestPriceSourceOf:
    def test_single_feed_events_name_their_emitter(self) -> None:
        """AnswerUpdated, OCR2 NewTransmission and Chronicle's Poked each move the emitting contract as a whole."""
        for signature in ("AnswerUpdated(int256,uint256,uint256)", "Poked(address,uint128,uint32)",
                          "NewTransmission(uint32,int192,address,uint32,int192[],bytes,int192,bytes32,uint40)"):  # fmt: skip
            assert price_source_of(log(AGGREGATOR, [event_topic(signature), "0x" + "00" * 32])) == PriceSource(
                emitter=AGGREGATOR)

    def test_multi_feed_events_carry_the_feed_id(self) -> None:
        """Pyth's id comes from topic 1; RedStone's dataFeedId from the second data word (nothing indexed)."""
        pyth = log(PYTH, [event_topic("PriceFeedUpdate(bytes32,uint64,int64,uint64)"), BTC_ID])
        redstone = log(ADAPTER, [event_topic("ValueUpdate(uint256,bytes32,uint256)")],
                       encode(["uint256", "bytes32", "uint256"], [5, bytes.fromhex(ETH_ID[2:]), 7]))  # fmt: skip
        assert price_source_of(pyth) == PriceSource(emitter=PYTH, feed_id=BTC_ID)
        assert price_source_of(redstone) == PriceSource(emitter=ADAPTER, feed_id=ETH_ID)

    def test_other_logs_are_no_price(self) -> None:
        """A Transfer, or a ValueUpdate too short to hold a dataFeedId, moves no source."""
        assert price_source_of(log(ADAPTER, [event_topic("Transfer(address,address,uint256)")])) is None
        assert price_source_of(log(ADAPTER, [event_topic("ValueUpdate(uint256,bytes32,uint256)")], b"\0" * 32)) is None

    def test_chainlink_answers_are_read_signed(self) -> None:
        """AnswerUpdated's answer is topic 1 (int256); NewTransmission's the first data word (int192, sign-extended);
        other price events carry no Chainlink answer."""
        updated = log(AGGREGATOR, [event_topic("AnswerUpdated(int256,uint256,uint256)"),
                                   "0x" + encode(["int256"], [-5]).hex(), "0x" + "00" * 32])  # fmt: skip
        transmitted = log(AGGREGATOR, [event_topic(
            "NewTransmission(uint32,int192,address,uint32,int192[],bytes,int192,bytes32,uint40)"), "0x" + "00" * 32],
            encode(["int192", "address"], [195_000_000_000, AGGREGATOR]))  # fmt: skip
        poked = log(AGGREGATOR, [event_topic("Poked(address,uint128,uint32)"), "0x" + "00" * 32], b"\0" * 64)
        assert (answer_of(updated), answer_of(transmitted), answer_of(poked)) == (-5, 195_000_000_000, None)

    def test_reroutes_only_for_followed_proxies(self) -> None:
        """AggregatorConfirmed means a new route only from a proxy that was followed."""
        confirmed = log(PROXY, [event_topic("AggregatorConfirmed(address,address)"), "0x" + "00" * 32, "0x" + "00" * 32])
        assert reroutes(confirmed, frozenset({PROXY})) and not reroutes(confirmed, frozenset({AGGREGATOR}))


class TestFollowFeeds:
    async def test_every_shape_down_to_its_sources(self) -> None:
        """Proxy -> aggregator; composite -> both parts; RedStone and Pyth -> (contract, id); adapter -> its feed."""
        reader = TableReader(CHAIN)
        followed = await follow_feeds(reader, [PROXY, COMPOSITE, REDSTONE_FEED, PYTH_FEED, EULER_ADAPTER], 9)  # type: ignore[arg-type]
        assert followed[PROXY].sources == {PriceSource(emitter=AGGREGATOR)}
        assert followed[PROXY].proxies == {PROXY}
        assert followed[COMPOSITE].sources == {PriceSource(emitter=RATIO), PriceSource(emitter=AGGREGATOR)}
        assert followed[COMPOSITE].proxies == {PROXY}
        assert followed[REDSTONE_FEED].sources == {PriceSource(emitter=ADAPTER, feed_id=ETH_ID)}
        assert followed[PYTH_FEED].sources == {PriceSource(emitter=PYTH, feed_id=BTC_ID)}
        assert followed[EULER_ADAPTER].sources == followed[COMPOSITE].sources
        assert reader.batches == 2  # one batch per level, each address probed once: the five, then RATIO and AGGREGATOR

    async def test_direct_only_where_the_answer_is_forwarded_untouched(self) -> None:
        """The oracle's answer is the event's for the aggregator itself and for Chainlink proxies (EAC interface,
        same answer at the block) in front of it, however many; never for a proxy look-alike without `phaseId()`,
        one whose answer differs (a multiplied or capped wrapper), a composite, RedStone, Pyth or an adapter."""
        answer = CallResult(success=True, data=encode(["int256"], [2_000 * 10**8]))
        scaled_answer = CallResult(success=True, data=encode(["int256"], [2_200 * 10**8]))
        phase = CallResult(success=True, data=encode(["uint16"], [3]))
        eac, outer, scaled, lookalike = ("0x" + f"{n:02x}" * 20 for n in (0x21, 0x22, 0x23, 0x24))
        chain = {**CHAIN, (AGGREGATOR, "latestAnswer()"): answer}
        for proxy, behind, its_answer, has_phase in ((eac, AGGREGATOR, answer, True), (outer, eac, answer, True),
                                                     (scaled, AGGREGATOR, scaled_answer, True),
                                                     (lookalike, AGGREGATOR, answer, False)):  # fmt: skip
            chain |= {(proxy, "aggregator()"): address(behind), (proxy, "latestAnswer()"): its_answer}
            if has_phase:
                chain[(proxy, "phaseId()")] = phase
        feeds = [AGGREGATOR, eac, outer, scaled, lookalike, PROXY, COMPOSITE, REDSTONE_FEED, PYTH_FEED, EULER_ADAPTER]
        followed = await follow_feeds(TableReader(chain), feeds, 9)  # type: ignore[arg-type]
        direct = {feed: outcome.direct for feed, outcome in followed.items() if outcome.direct is not None}
        assert direct == {feed: PriceSource(emitter=AGGREGATOR) for feed in (AGGREGATOR, eac, outer)}
        assert followed[scaled].sources == followed[eac].sources  # still followed: its holders are read on each move

    async def test_unfollowable_feed_is_quarantined_and_the_rest_resolve(self) -> None:
        """A feed whose every read reverts is logged and left without sources; the others are still followed."""
        with capture_logs() as logs:
            followed = await follow_feeds(TableReader(CHAIN), [BROKEN, PROXY], 9, protocol="p")  # type: ignore[arg-type]
        assert followed[BROKEN].sources == frozenset() and followed[BROKEN].unresolved
        assert followed[PROXY].sources == {PriceSource(emitter=AGGREGATOR)}
        assert [(e["event"], e["feed"], e["protocol"]) for e in logs] == [("feeds.quarantined", BROKEN, "p")]

    async def test_composite_with_a_broken_part_is_quarantined(self) -> None:
        """A ratio feed whose base part is unreadable would be half-watched: the whole feed is quarantined."""
        chain = {**CHAIN, (COMPOSITE, "baseFeed()"): FAILED}
        with capture_logs():
            followed = await follow_feeds(TableReader(chain), [COMPOSITE], 9)  # type: ignore[arg-type]
        assert followed[COMPOSITE].sources == frozenset() and "baseFeed" in followed[COMPOSITE].unresolved


class TestIndexBySource:
    def test_another_feed_id_of_the_same_contract_touches_nobody(self) -> None:
        """Holders of the ETH feed's asset are not touched by the BTC feed of the same RedStone adapter."""
        index, holder = ExposureIndex(), Target(protocol="morpho", account="0xA")
        index.set_exposure(holder, frozenset({"market-eth"}))
        index.set_feeds("morpho", {PriceSource(emitter=ADAPTER, feed_id=ETH_ID): frozenset({"market-eth"})})
        assert index.targets_priced_by(PriceSource(emitter=ADAPTER, feed_id=ETH_ID)) == {holder}
        assert index.targets_priced_by(PriceSource(emitter=ADAPTER, feed_id=BTC_ID)) == set()
        assert index.feeds() == {ADAPTER}
