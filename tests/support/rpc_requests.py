"""What chainwatch asked the node, from the counting proxy's record: the calls inside each `aggregate3` eth_call,
and the block ranges of eth_getLogs queries, so that a test can count the work a start-up did."""

from __future__ import annotations

from eth_abi import decode
from eth_utils import keccak

from tests.support.rpcproxy import RpcProxy

_AGGREGATE3 = keccak(text="aggregate3((address,bool,bytes)[])")[:4]


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def inner_calls(proxy: RpcProxy, since: int = 0) -> list[tuple[str, bytes]]:
    """(target, calldata) of every call chainwatch made through the proxy from request number `since` on; an
    aggregate3 eth_call counts as the calls inside it."""
    calls: list[tuple[str, bytes]] = []
    for method, params in proxy.requests[since:]:
        if method != "eth_call":
            continue
        call = params[0]
        assert isinstance(call, dict)
        data = bytes.fromhex(str(call.get("data") or call.get("input") or "0x")[2:])
        if data[:4] == _AGGREGATE3:
            (inner,) = decode(["(address,bool,bytes)[]"], data[4:])
            calls += [(target.lower(), bytes(payload)) for target, _, payload in inner]
        else:
            calls.append((str(call["to"]).lower(), data))
    return calls


def count_selector(proxy: RpcProxy, signature: str, since: int = 0) -> int:
    wanted = selector(signature)
    return sum(1 for _, data in inner_calls(proxy, since) if data[:4] == wanted)


def log_ranges(proxy: RpcProxy, topic0: str, since: int = 0) -> list[tuple[int, int]]:
    """(fromBlock, toBlock) of each eth_getLogs query whose first topic is exactly `topic0` (a discovery scan's;
    the listener asks for a list of topics)."""
    ranges = []
    for method, params in proxy.requests[since:]:
        query = params[0] if params else None
        if method == "eth_getLogs" and isinstance(query, dict) and (query.get("topics") or [None])[0] == topic0:
            ranges.append((int(query["fromBlock"], 16), int(query["toBlock"], 16)))
    return ranges
