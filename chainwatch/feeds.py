"""Price feeds: the one place that knows what real oracles emit, and how to follow a feed to the contract that emits.

Protocols find which address prices each of their assets (Aave's `getSourceOfAsset`, Morpho's BASE_FEED_1..,
Euler's router adapter) and hand it to `follow_feeds`, which walks proxies, adapters and composite feeds down to
the price sources behind it. A price source is an emitting contract and, for contracts that carry many feeds
(RedStone's shared adapter, Pyth), the feed's id within it; `price_source_of(log)` says which source a log moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import structlog

from chainwatch.abi import calldata, decode, event_topic
from chainwatch.chain import Log
from chainwatch.model import Record
from chainwatch.multicall import Call, CallResult
from chainwatch.reader import Reader

log = structlog.get_logger(__name__)

# Chainlink aggregators (the contract behind a proxy) announce each new answer.
ANSWER_UPDATED = event_topic("AnswerUpdated(int256,uint256,uint256)")
# OCR2 aggregators (libocr OCR2Aggregator.sol) also emit this on every transmission.
NEW_TRANSMISSION = event_topic(
    "NewTransmission(uint32,int192,address,uint32,int192[],bytes,int192,bytes32,uint40)"
)
# Chronicle (Scribe) oracles: `Poked(address indexed caller, uint128 val, uint32 age)`, from the oracle itself.
POKED = event_topic("Poked(address,uint128,uint32)")
# Pyth: one contract for every feed, the price id indexed.
PRICE_FEED_UPDATE = event_topic("PriceFeedUpdate(bytes32,uint64,int64,uint64)")
# RedStone's shared MultiFeedAdapterWithoutRounds: nothing indexed, the data feed id is the second data word.
VALUE_UPDATE = event_topic("ValueUpdate(uint256,bytes32,uint256)")
PRICE_EVENTS = (ANSWER_UPDATED, NEW_TRANSMISSION, POKED, PRICE_FEED_UPDATE, VALUE_UPDATE)

# A Chainlink proxy now reads another aggregator: whoever followed it must resolve again.
AGGREGATOR_CONFIRMED = event_topic("AggregatorConfirmed(address,address)")
ROUTE_EVENTS = (AGGREGATOR_CONFIRMED,)

_MAX_DEPTH = 5  # proxy -> composite -> proxy -> aggregator is 4; deeper is a loop or something unknown


class PriceSource(Record, frozen=True, kw_only=True, order=True):
    """Where a price moves: the emitting contract (lower-case) and, in a multi-feed contract, the feed's id
    (0x-hex bytes32, lower-case); an empty `feed_id` means every price log of the emitter."""

    emitter: str
    feed_id: str = ""


def as_price_source(source: PriceSource | str) -> PriceSource:
    """A bare address (what older protocol modules return) is a single-feed emitter."""
    return source if isinstance(source, PriceSource) else PriceSource(emitter=source.lower())


def is_price_update(log: Log) -> bool:
    return log.topic0 in PRICE_EVENTS


def price_source_of(log: Log) -> PriceSource | None:
    """The source a price log moved; None for any other log, or a price log too short to say which feed."""
    if log.topic0 in (ANSWER_UPDATED, NEW_TRANSMISSION, POKED):
        return PriceSource(emitter=log.address.lower())
    if log.topic0 == PRICE_FEED_UPDATE and len(log.topics) > 1:
        return PriceSource(emitter=log.address.lower(), feed_id=log.topics[1].lower())
    if log.topic0 == VALUE_UPDATE and len(log.data) >= 64:
        return PriceSource(emitter=log.address.lower(), feed_id="0x" + log.data[32:64].hex())
    return None


def answer_of(log: Log) -> int | None:
    """The new answer a Chainlink aggregator's price log carries (signed); None for any other log or shape."""
    if log.topic0 == ANSWER_UPDATED and len(log.topics) > 1:
        return int.from_bytes(bytes.fromhex(log.topics[1].removeprefix("0x")), "big", signed=True)
    if log.topic0 == NEW_TRANSMISSION and len(log.data) >= 32:
        return int.from_bytes(log.data[:32], "big", signed=True)  # int192 answer, sign-extended to its word
    return None


def reroutes(log: Log, followed_proxies: frozenset[str]) -> bool:
    """A proxy this protocol followed now points at another aggregator."""
    return log.topic0 in ROUTE_EVENTS and log.address.lower() in followed_proxies


class Followed(NamedTuple):
    """What one feed address leads to: the sources whose updates move it, and the proxies on the way (whose
    `AggregatorConfirmed` changes it). `unresolved` says why nothing is followed (the asset then relies on the
    refresh tiers); empty when resolved."""

    sources: frozenset[PriceSource]
    proxies: frozenset[str]
    unresolved: str = ""
    # The source whose announced answer IS what the feed address's `latestAnswer()` returns: the address itself
    # when it is a Chainlink-shaped aggregator, or the aggregator behind a chain of Chainlink proxies, which
    # forward the answer untouched. None when anything in between may transform it (a composite, an adapter, a
    # wrapper that only looks like a proxy), or when the source's events carry no answer to screen with.
    direct: PriceSource | None = None


# --- reading the shapes -----------------------------------------------------------------------------------------

# Every probe is made on every address in one batch; a contract without the function simply fails that call.
_PROBES = (
    "aggregator()",  # Chainlink proxy (EACAggregatorProxy)
    "phaseId()",  # ... whose answer is its current phase aggregator's, untouched (what a look-alike lacks)
    "latestAnswer()",  # compared across a proxy and its aggregator: a proxy that forwards returns the same
    "getPriceFeedAdapter()",  # RedStone per-feed contract
    "getDataFeedId()",
    "pyth()",  # Pyth: the Chainlink-shaped PythAggregatorV3 (priceId) and Euler's PythOracle (feedId)
    "priceId()",
    "feedId()",
    "ratioFeed()",  # composite "ratio x base" (Neverland's RatioOracleAggregator shape, as the devnet has it)
    "baseFeed()",
    "oracleBaseCross()",  # Euler CrossAdapter: base/cross x cross/quote
    "oracleCrossQuote()",
    "feed()",  # Euler's Chainlink and Chronicle adapters
    "latestRoundData()",  # a bare Chainlink-shaped feed that emits for itself (aggregator, Chronicle)
)
_P = {name: i for i, name in enumerate(_PROBES)}


class _Node(NamedTuple):
    """One address, classified: a leaf source, or the addresses it reads (all of which move it)."""

    source: PriceSource | None = None
    reads: tuple[str, ...] = ()
    is_proxy: bool = False
    broken: str = ""
    forwards: bool = False  # a proxy with the EACAggregatorProxy interface (`phaseId()` as well as `aggregator()`)
    answer: int | None = None  # `latestAnswer()` at the block followed, when it has one


def _word_address(result: CallResult) -> str | None:
    """A non-zero address result (lower-case); None when the call failed or returned something else."""
    if not result.success or len(result.data) != 32:
        return None
    value = int.from_bytes(result.data, "big")
    return f"0x{value:040x}" if 0 < value < 2**160 else None


def _word_bytes32(result: CallResult) -> str | None:
    if not result.success or len(result.data) != 32 or not any(result.data):
        return None
    return "0x" + result.data.hex()


def _word_int(result: CallResult) -> int | None:
    if not result.success or len(result.data) != 32:
        return None
    return int.from_bytes(result.data, "big", signed=True)


def classify(address: str, results: Sequence[CallResult]) -> _Node:
    """Pure: which feed shape the probe results show for `address`."""
    r = {name: results[i] for name, i in _P.items()}
    answer = _word_int(r["latestAnswer()"])
    aggregator = _word_address(r["aggregator()"])
    if aggregator is not None:
        forwards = r["phaseId()"].success and len(r["phaseId()"].data) == 32
        return _Node(reads=(aggregator,), is_proxy=True, forwards=forwards, answer=answer)
    if r["getDataFeedId()"].success:
        adapter, feed_id = _word_address(r["getPriceFeedAdapter()"]), _word_bytes32(r["getDataFeedId()"])
        if adapter is None or feed_id is None:
            return _Node(broken="RedStone feed without a readable adapter or data feed id")
        return _Node(source=PriceSource(emitter=adapter, feed_id=feed_id))
    pyth = _word_address(r["pyth()"])
    if pyth is not None:
        price_id = _word_bytes32(r["priceId()"]) or _word_bytes32(r["feedId()"])
        if price_id is None:
            return _Node(broken="Pyth adapter without a readable price id")
        return _Node(source=PriceSource(emitter=pyth, feed_id=price_id))
    for first, second in (("ratioFeed()", "baseFeed()"), ("oracleBaseCross()", "oracleCrossQuote()")):
        if r[first].success or r[second].success:
            parts = (_word_address(r[first]), _word_address(r[second]))
            if None in parts:
                return _Node(broken=f"composite feed with an unreadable {first if parts[0] is None else second}")
            return _Node(reads=parts)  # type: ignore[arg-type]
    feed = _word_address(r["feed()"])
    if feed is not None:
        return _Node(reads=(feed,))
    if r["latestRoundData()"].success:
        return _Node(source=PriceSource(emitter=address), answer=answer)
    return _Node(broken="no known feed shape, and latestRoundData() reverts")


def _probes(address: str) -> list[Call]:
    return [Call(target=address, data=calldata(probe), gas=60_000) for probe in _PROBES]


def combine(root: str, nodes: Mapping[str, _Node]) -> Followed:
    """Pure: the sources and proxies under `root` in the classified graph, or why it cannot be followed."""
    sources: set[PriceSource] = set()
    proxies: set[str] = set()
    frontier, depth = [root], 0
    while frontier:
        if depth >= _MAX_DEPTH:
            return Followed(frozenset(), frozenset(proxies), f"deeper than {_MAX_DEPTH} feeds")
        following = []
        for address in frontier:
            node = nodes[address]
            if node.broken:
                return Followed(frozenset(), frozenset(proxies), f"{address}: {node.broken}")
            if node.source is not None:
                sources.add(node.source)
            if node.is_proxy:
                proxies.add(address)
            following += node.reads
        frontier, depth = following, depth + 1
    return Followed(frozenset(sources), frozenset(proxies), direct=_direct_source(root, nodes))


def _direct_source(root: str, nodes: Mapping[str, _Node]) -> PriceSource | None:
    """Pure: the aggregator whose announced answer `root` returns as it is, through Chainlink proxies only.

    A proxy counts only with the EACAggregatorProxy interface and when, at the block followed, its answer equals
    its aggregator's: a look-alike that scales, caps or converts the answer fails one or the other (one that
    happened to match only until later would also need `phaseId()`, which no known adapter has). A proxy that
    switches aggregators announces it (`AggregatorConfirmed`) and the feeds are followed again."""
    address, seen = root, set()
    while address not in seen:
        seen.add(address)
        node = nodes[address]
        if not node.is_proxy:
            bare = node.source == PriceSource(emitter=address) and not node.reads
            return node.source if bare else None
        (behind,) = node.reads
        if not node.forwards or node.answer is None or node.answer != nodes[behind].answer:
            return None
        address = behind
    return None


async def follow_feeds(reader: Reader, feeds: Iterable[str], block: int, **context: object) -> dict[str, Followed]:
    """Follows each feed address (lower-cased in the answer) to its price sources, one batch per level.

    A feed that cannot be followed (a revert, an unknown shape) is quarantined: logged as a warning with
    `context` (e.g. protocol=...), and its `Followed` has no sources, so that asset is seen only by the refresh
    tiers while every other feed still resolves. A transport failure (ReadFailed) is raised: nothing is known.
    """
    roots = sorted({feed.lower() for feed in feeds})
    nodes: dict[str, _Node] = {}
    frontier = list(roots)
    for _ in range(_MAX_DEPTH):
        frontier = sorted(set(frontier) - nodes.keys())
        if not frontier:
            break
        results = await reader.read([call for address in frontier for call in _probes(address)], block)
        for i, address in enumerate(frontier):
            nodes[address] = classify(address, results[len(_PROBES) * i : len(_PROBES) * (i + 1)])
        frontier = [read for address in frontier for read in nodes[address].reads]
    for address in set(frontier) - nodes.keys():
        nodes[address] = _Node(broken=f"deeper than {_MAX_DEPTH} feeds")
    followed = {root: combine(root, nodes) for root in roots}
    for root, outcome in followed.items():
        if outcome.unresolved:
            log.warning("feeds.quarantined", feed=root, reason=outcome.unresolved, block=block, **context)
    return followed


# --- kept for modules that follow only a Chainlink proxy ---------------------------------------------------------


def aggregator_call(source: str) -> Call:
    """`aggregator()` on a Chainlink proxy; a bare aggregator has no such function and the call fails."""
    return Call(target=source, data=calldata("aggregator()"), gas=30_000)


def emitter_of(source: str, aggregator_result: CallResult) -> str:
    """The contract whose logs announce price changes for `source` (lower-case)."""
    if aggregator_result.success and len(aggregator_result.data) == 32:
        (aggregator,) = decode(["address"], aggregator_result.data)
        if int(aggregator, 16) != 0:
            return aggregator.lower()
    return source.lower()
