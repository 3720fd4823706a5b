"""Multicall3 `aggregate3`: packing many view calls into one `eth_call`, and splitting them into chunks.

Pure encoding and chunking; the reader does the I/O. Chunks are bounded by count and by estimated gas,
because an `eth_call` is capped by the node's gas limit (a few hundred Aave reads already exceed 30M).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from chainwatch.model import Record

CANONICAL_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
_AGGREGATE3 = keccak(text="aggregate3((address,bool,bytes)[])")[:4]


class Call(Record, frozen=True, kw_only=True):
    """One view call: target contract, ABI-encoded calldata, and a gas estimate for chunking.

    `keep_with_next` ties a call to the one after it in the same eth_call: aggregate3 runs its calls in one
    state, so a state-changing call (Morpho's `accrueInterest`) only informs a read made in the same chunk.
    """

    target: str
    data: bytes
    gas: int = 100_000
    keep_with_next: bool = False


class CallResult(Record, frozen=True, kw_only=True):
    success: bool
    data: bytes


def encode_aggregate3(calls: Sequence[Call]) -> bytes:
    """Calldata for `aggregate3` with `allowFailure` set: one failing call must not hide the others."""
    return _AGGREGATE3 + abi_encode(
        ["(address,bool,bytes)[]"], [[(call.target, True, call.data) for call in calls]]
    )


def decode_aggregate3(raw: bytes, expected: int) -> list[CallResult]:
    """Results of `aggregate3`, in call order; a length mismatch means the node answered something else."""
    (results,) = abi_decode(["(bool,bytes)[]"], raw)
    if len(results) != expected:
        raise ValueError(f"aggregate3 returned {len(results)} results for {expected} calls")
    return [CallResult(success=ok, data=bytes(data)) for ok, data in results]


def chunked(calls: Sequence[Call], *, max_calls: int, max_gas: int) -> Iterator[Sequence[Call]]:
    """Consecutive runs of calls, each within both bounds (a single call over max_gas gets a chunk alone), never
    cut right after a call that must keep with the next (such a chunk may then exceed a bound by that call)."""
    start, gas = 0, 0
    for i, call in enumerate(calls):
        over = i - start >= max_calls or gas + call.gas > max_gas
        if i > start and over and not calls[i - 1].keep_with_next:
            yield calls[start:i]
            start, gas = i, 0
        gas += call.gas
    if start < len(calls):
        yield calls[start:]
