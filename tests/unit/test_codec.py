"""The hand-written aggregate3 codec and word decoder against eth_abi, on seeded random values and on garbage.

The reference is eth_abi's strict coder, as the code used it before: for any input the own codec must give the
same bytes or values, or raise ValueError exactly where eth_abi refuses. Seeded, so a failure reproduces.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from chainwatch import words
from chainwatch.multicall import Call, CallResult, decode_aggregate3, encode_aggregate3

CASES = 3_000
_SELECTOR = keccak(text="aggregate3((address,bool,bytes)[])")[:4]


def reference_encode(calls: list[Call]) -> bytes:
    return _SELECTOR + abi_encode(["(address,bool,bytes)[]"], [[(c.target, True, c.data) for c in calls]])


def reference_decode(raw: bytes, expected: int) -> list[CallResult]:
    (results,) = abi_decode(["(bool,bytes)[]"], raw)
    if len(results) != expected:
        raise ValueError("count")
    return [CallResult(success=ok, data=bytes(data)) for ok, data in results]


def random_bytes(rng: random.Random) -> bytes:
    # Empty, odd lengths, exact words and a word plus one: where padding goes wrong.
    length = rng.choice([0, 0, 1, 4, 31, 32, 33, 36, 63, 64, 65, rng.randrange(0, 300)])
    return rng.randbytes(length)


def random_address(rng: random.Random) -> str:
    # eth_abi takes any case (it checks no checksum), so the codec must too.
    address = "0x" + rng.randbytes(20).hex()
    return rng.choice([address, to_checksum_address(address), address.upper().replace("0X", "0x")])


def random_results(rng: random.Random) -> list[tuple[bool, bytes]]:
    return [(rng.random() < 0.7, random_bytes(rng)) for _ in range(rng.choice([0, 1, 2, rng.randrange(0, 40)]))]


def mangled(rng: random.Random, raw: bytes) -> bytes:
    """Garbage near a valid answer: truncated, extended, a byte flipped, a word overwritten with a small or huge
    number (offsets, lengths and flags are where a decoder believes the data)."""
    choice = rng.randrange(5)
    if choice == 0:
        return raw[: rng.randrange(0, len(raw) + 1)]
    if choice == 1:
        return raw + rng.randbytes(rng.randrange(1, 70))
    data = bytearray(raw)
    if not data:
        return bytes(rng.randbytes(rng.randrange(0, 100)))
    if choice == 2:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    else:
        at = rng.randrange(0, max(1, len(data) // 32)) * 32
        value = rng.choice([0, 1, 2, 0x20, 0x40, 0x60, rng.randrange(0, 600), 2**255, 2**256 - 1])
        data[at : at + 32] = value.to_bytes(32, "big")
    return bytes(data)


def outcome(function: Callable[[], Any]) -> Any:
    try:
        return function()
    except (ValueError, DecodingError, OverflowError):  # eth_abi overflows on a length past sys.maxsize
        return "refused"


class TestEncodeAggregate3:
    def test_same_bytes_as_eth_abi_on_random_calls(self) -> None:
        """Any calls, empty calldata and odd lengths included, encode to eth_abi's exact bytes."""
        rng = random.Random(0xA66)
        for _ in range(CASES):
            calls = [Call(target=random_address(rng), data=random_bytes(rng))
                     for _ in range(rng.choice([0, 1, 2, rng.randrange(0, 30)]))]  # fmt: skip
            assert encode_aggregate3(calls) == reference_encode(calls), calls

    @pytest.mark.parametrize("target", ["0x1234", "11" * 20, "0x" + "zz" * 20, "0x" + "11" * 21, ""])
    def test_malformed_target_is_refused_by_name(self, target: str) -> None:
        """A target that is not a 20-byte hex address is a ValueError naming it, never a wrong word."""
        with pytest.raises(ValueError, match="call target"):
            encode_aggregate3([Call(target=target, data=b"")])


class TestDecodeAggregate3:
    def test_same_results_as_eth_abi_on_random_answers(self) -> None:
        """Random success flags and return data (empty, odd-length) decode as eth_abi decodes them."""
        rng = random.Random(0xDEC)
        for _ in range(CASES):
            results = random_results(rng)
            raw = abi_encode(["(bool,bytes)[]"], [results])
            assert decode_aggregate3(raw, len(results)) == reference_decode(raw, len(results))
            assert [(r.success, r.data) for r in decode_aggregate3(raw, len(results))] == results

    def test_garbage_is_refused_exactly_where_eth_abi_refuses_it(self) -> None:
        """Truncated, extended and overwritten answers: the same results as eth_abi, or a ValueError where it
        raises; never a value from data eth_abi calls malformed (and the refusals are not all of one kind)."""
        rng = random.Random(0x6A6)
        refused = accepted = 0
        for _ in range(CASES):
            results = random_results(rng)
            raw = mangled(rng, abi_encode(["(bool,bytes)[]"], [results]))
            mine = outcome(lambda: decode_aggregate3(raw, len(results)))
            assert mine == outcome(lambda: reference_decode(raw, len(results))), raw.hex()
            refused += mine == "refused"
            accepted += mine != "refused"
        assert refused > CASES // 4 and accepted > CASES // 10  # the garbage exercised both sides

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b"", "no word at byte 0"),
            ((0x20).to_bytes(32, "big"), "array offset 32 outside"),
            ((0x20).to_bytes(32, "big") + (1).to_bytes(32, "big"), "1 offsets do not fit"),
            (abi_encode(["(bool,bytes)[]"], [[(True, b"\x01")]])[:-1], "run past"),
        ],
    )
    def test_short_data_says_what_is_missing(self, raw: bytes, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            decode_aggregate3(raw, 1)

    def test_success_flag_other_than_0_or_1_is_refused(self) -> None:
        raw = bytearray(abi_encode(["(bool,bytes)[]"], [[(True, b"")]]))
        raw[3 * 32 + 31] = 2  # the first result's success word
        with pytest.raises(ValueError, match="success flag 0x2"):
            decode_aggregate3(bytes(raw), 1)

    def test_non_zero_padding_is_refused(self) -> None:
        raw = bytearray(abi_encode(["(bool,bytes)[]"], [[(True, b"\x01")]]))
        raw[-1] = 1
        with pytest.raises(ValueError, match="non-zero padding"):
            decode_aggregate3(bytes(raw), 1)


# Every shape the protocols' hot reads decode with `words`.
SHAPES = [
    ("uint256",) * 6,
    ("uint256",),
    ("uint256[]",),
    ("uint128",) * 6,
    ("uint256", "uint128", "uint128"),
    ("uint256", "uint256"),
    ("uint256",) * 3,
    ("address", "address", "uint8", "bool", "uint256", "uint256"),
    ("address[]",),
    ("address[]", "uint256[]", "uint256"),
]


def random_value(rng: random.Random, type_: str) -> Any:
    if type_.endswith("[]"):
        return [random_value(rng, type_[:-2]) for _ in range(rng.choice([0, 1, 3, rng.randrange(0, 25)]))]
    if type_ == "address":
        return "0x" + rng.randbytes(20).hex()
    if type_ == "bool":
        return rng.random() < 0.5
    bits = int(type_[4:])
    return rng.choice([0, 1, 2**bits - 1, rng.getrandbits(bits), rng.getrandbits(rng.randrange(1, bits + 1))])


class TestWords:
    @pytest.mark.parametrize("types", SHAPES, ids=",".join)
    def test_same_values_as_eth_abi_on_random_words(self, types: tuple[str, ...]) -> None:
        rng = random.Random(zlib.crc32(",".join(types).encode()))
        shape = words.layout(*types)
        for _ in range(CASES // 3):
            raw = abi_encode(list(types), [random_value(rng, t) for t in types])
            assert words.decode(shape, raw) == abi_decode(list(types), raw)

    @pytest.mark.parametrize("types", SHAPES, ids=",".join)
    def test_garbage_is_refused_exactly_where_eth_abi_refuses_it(self, types: tuple[str, ...]) -> None:
        """Short, odd-length, flipped and overwritten words: eth_abi's values or a ValueError where it raises."""
        rng = random.Random(0xBAD ^ zlib.crc32(",".join(types).encode()))
        shape = words.layout(*types)
        refused = 0
        for _ in range(CASES // 3):
            raw = mangled(rng, abi_encode(list(types), [random_value(rng, t) for t in types]))
            mine = outcome(lambda: words.decode(shape, raw))
            assert mine == outcome(lambda: abi_decode(list(types), raw)), raw.hex()
            refused += mine == "refused"
        assert refused > 0

    def test_short_result_names_the_head_it_misses(self) -> None:
        with pytest.raises(ValueError, match="31 bytes, too short for the 64-byte head of \\(uint256,uint256\\)"):
            words.decode(words.layout("uint256", "uint256"), bytes(31))

    def test_too_wide_value_is_refused_not_truncated(self) -> None:
        """A uint128 word with high bits set would be silently wrong if masked: it is refused."""
        with pytest.raises(ValueError, match="not a uint128"):
            words.decode(words.layout("uint128"), (2**128).to_bytes(32, "big"))

    @pytest.mark.parametrize("type_", ["string", "bytes", "int256", "(uint256,uint256)", "uint7", "uint264"])
    def test_only_fixed_word_types_compile(self, type_: str) -> None:
        with pytest.raises(ValueError, match="not a fixed-word type"):
            words.layout(type_)
