"""Price feeds: the one place that knows what a Chainlink-style aggregator emits and how to find it.

Protocols resolve which feed prices which asset; this module says which log means "the price moved"
and how to follow a proxy to the aggregator that actually emits.
"""

from __future__ import annotations

from chainwatch.abi import calldata, decode, event_topic
from chainwatch.chain import Log
from chainwatch.multicall import Call, CallResult

ANSWER_UPDATED = event_topic("AnswerUpdated(int256,uint256,uint256)")
PRICE_EVENTS = (ANSWER_UPDATED,)


def is_price_update(log: Log) -> bool:
    return log.topic0 in PRICE_EVENTS


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
