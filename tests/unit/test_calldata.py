"""abi.calldata's hand-made words for addresses, uint256 and bool: the same bytes as eth_abi on seeded random
values, and eth_abi's own refusal for whatever it refuses (so a bad value fails as loudly as before)."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from chainwatch.abi import calldata, selector

SIGNATURES = ("f(address)", "f(address,bool)", "f(uint256,address,address)", "f(address,uint256)", "f(bool,bool,bool)")


def reference(signature: str, *args: object) -> bytes:
    types = signature[2:-1].split(",")
    return selector(signature) + abi_encode(types, list(args))


def random_value(rng: random.Random, type_: str) -> object:
    if type_ == "address":
        raw = "0x" + rng.randbytes(20).hex()
        return rng.choice([raw, raw.upper().replace("0X", "0x"), to_checksum_address(raw)])
    if type_ == "uint256":
        return rng.choice([0, 1, (1 << 256) - 1, rng.getrandbits(rng.randint(1, 256))])
    return rng.choice([True, False])


def test_random_values_encode_as_eth_abi_does() -> None:
    rng = random.Random(11)
    for _ in range(3_000):
        signature = rng.choice(SIGNATURES)
        args = [random_value(rng, t) for t in signature[2:-1].split(",")]
        assert calldata(signature, *args) == reference(signature, *args)


@pytest.mark.parametrize("value", [
    "0x" + "ab" * 19,  # too short
    "0x" + "zz" * 20,  # not hex
    "0x" + "ab " * 13 + "a",  # spaces fromhex would skip
    "ab" * 21,  # no prefix, 42 characters
    b"\x01" * 20,  # bytes: left to eth_abi, which takes them
    None,
])  # fmt: skip
def test_an_address_the_fast_path_does_not_take_is_left_to_eth_abi(value: object) -> None:
    try:
        expected: bytes | type[Exception] = reference("f(address)", value)
    except Exception as error:  # noqa: BLE001 - whichever eth_abi raises, calldata must raise the same
        expected = type(error)
    if isinstance(expected, bytes):
        assert calldata("f(address)", value) == expected
    else:
        with pytest.raises(expected):
            calldata("f(address)", value)


@pytest.mark.parametrize(("signature", "value"), [("f(uint256)", -1), ("f(uint256)", 1 << 256), ("f(uint256)", True),
                                                  ("f(bool)", 1), ("f(uint256)", 1.5)])  # fmt: skip
def test_a_value_eth_abi_refuses_is_still_refused(signature: str, value: object) -> None:
    with pytest.raises(Exception) as caught:
        calldata(signature, value)
    with pytest.raises(caught.type):
        reference(signature, value)
