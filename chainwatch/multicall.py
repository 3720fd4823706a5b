"""Multicall3 `aggregate3`: packing many view calls into one `eth_call`, and splitting them into chunks.

Pure encoding and chunking; the reader does the I/O. Chunks are bounded by count and by estimated gas,
because an `eth_call` is capped by the node's gas limit (a few hundred Aave reads already exceed 30M).

The calldata and the results are laid out by hand, not through `eth_abi`: every pass encodes and decodes
thousands of calls of this one fixed shape, and the general coder cost several times the node's own time.
The layouts, checked against `eth_abi` by the tests:

    calldata = selector · 0x20 · n · offset[0..n) · call[0..n)         offsets from the word after n
    call     = address · true · 0x60 · len(data) · data, zero-padded to 32 bytes
    results  = 0x20 · n · offset[0..n) · result[0..n)                  (bool,bytes)[] as a one-value tuple
    result   = success · 0x40 · len(data) · data, zero-padded
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

from eth_utils import keccak

from chainwatch.model import Record
from chainwatch.words import WORD, word_at

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


_ARRAY_AT = (0x20).to_bytes(WORD, "big")
# A call's fixed words after its address: allowFailure = true, then its bytes' offset within the call (3 words).
_ALLOW_FAILURE_AND_OFFSET = (1).to_bytes(WORD, "big") + (0x60).to_bytes(WORD, "big")
_RESULT_HEAD = 2 * WORD


@lru_cache(maxsize=4096)
def _address_word(target: str) -> bytes:
    """A target's ABI word. Any case is taken, as eth_abi takes it: the checksum is the config's concern."""
    hex_part = target[2:] if target[:2] in ("0x", "0X") else ""
    try:
        raw = bytes.fromhex(hex_part)
    except ValueError:
        raw = b""
    if len(raw) != 20 or len(hex_part) != 40:
        raise ValueError(f"aggregate3: call target {target!r} is not a 0x-prefixed 20-byte hex address")
    return bytes(12) + raw


def encode_aggregate3(calls: Sequence[Call]) -> bytes:
    """Calldata for `aggregate3` with `allowFailure` set: one failing call must not hide the others."""
    offsets, bodies, at = [], [], WORD * len(calls)
    for call in calls:
        data = call.data
        body = b"".join((_address_word(call.target), _ALLOW_FAILURE_AND_OFFSET, len(data).to_bytes(WORD, "big"),
                         data, bytes(-len(data) % WORD)))  # fmt: skip
        offsets.append(at.to_bytes(WORD, "big"))
        bodies.append(body)
        at += len(body)
    return b"".join((_AGGREGATE3, _ARRAY_AT, len(calls).to_bytes(WORD, "big"), *offsets, *bodies))


def decode_aggregate3(raw: bytes, expected: int) -> list[CallResult]:
    """Results of `aggregate3`, in call order; a length mismatch means the node answered something else.

    Refuses (ValueError) exactly what eth_abi's strict decoder refuses: a word missing, an offset into the head
    it belongs to or past the end, a success flag other than 0 or 1, padding that is not zero."""
    size = len(raw)
    array = word_at(raw, 0)
    if array < WORD or array >= size:
        raise ValueError(f"aggregate3 results: array offset {array} outside the {size} bytes returned")
    count = word_at(raw, array)
    if count != expected:
        raise ValueError(f"aggregate3 returned {count} results for {expected} calls")
    base = array + WORD  # element offsets count from here
    if base + WORD * count > size:
        raise ValueError(f"aggregate3 results: {count} offsets do not fit in the {size} bytes returned")
    results = []
    for i in range(count):
        at = base + word_at(raw, base + WORD * i)
        if at < base + WORD * count or at >= size:
            raise ValueError(f"aggregate3 result {i}: offset points outside its array (byte {at} of {size})")
        results.append(_result(raw, at, i))
    return results


def _result(raw: bytes, at: int, index: int) -> CallResult:
    success = word_at(raw, at)
    if success > 1:
        raise ValueError(f"aggregate3 result {index}: success flag {success:#x} is neither 0 nor 1")
    data_at = at + word_at(raw, at + WORD)
    if data_at < at + _RESULT_HEAD or data_at >= len(raw):
        raise ValueError(f"aggregate3 result {index}: data offset points outside the result (byte {data_at})")
    length = word_at(raw, data_at)
    start = data_at + WORD
    padded = length + -length % WORD
    if start + padded > len(raw):
        raise ValueError(f"aggregate3 result {index}: {length} bytes of data run past the {len(raw)} returned")
    if any(raw[start + length : start + padded]):
        raise ValueError(f"aggregate3 result {index}: non-zero padding after its {length} bytes of data")
    return CallResult(success=success == 1, data=raw[start : start + length])


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
