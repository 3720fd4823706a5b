"""The logs bloom of a block header: which addresses and topics *may* have logged in it.

A head whose bloom rules out every watched emitter or event needs no `eth_getLogs` at all; one that may
hold a relevant log is fetched in full, so the engine never acts on a block with part of its logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from eth_utils import keccak

BLOOM_BYTES = 256


@lru_cache(maxsize=4096)
def _bits(item: bytes) -> tuple[int, int, int]:
    digest = keccak(item)
    # Ethereum's M3:2048: three 11-bit indices from the first three byte pairs of the hash.
    return tuple(((digest[i] << 8) | digest[i + 1]) & 2047 for i in (0, 2, 4))  # type: ignore[return-value]


def bloom_contains(bloom: bytes, item: bytes) -> bool:
    return all(bloom[BLOOM_BYTES - 1 - bit // 8] >> (bit % 8) & 1 for bit in _bits(item))


def bloom_with(items: Iterable[bytes]) -> bytes:
    """A bloom holding `items` (for tests and for reasoning about what a header claims)."""
    bloom = bytearray(BLOOM_BYTES)
    for item in items:
        for bit in _bits(item):
            bloom[BLOOM_BYTES - 1 - bit // 8] |= 1 << (bit % 8)
    return bytes(bloom)


def may_hold(bloom: bytes, addresses: Iterable[str], topic0s: Iterable[str]) -> bool:
    """False only when no log from `addresses` with a topic0 in `topic0s` can be in the block."""
    if len(bloom) != BLOOM_BYTES:
        return True  # no usable bloom: assume the worst and look
    return any(bloom_contains(bloom, bytes.fromhex(a.removeprefix("0x"))) for a in addresses) and any(
        bloom_contains(bloom, bytes.fromhex(t.removeprefix("0x"))) for t in topic0s
    )
