"""aggregate3 encoding, decoding and chunking."""

import pytest
from eth_abi import decode, encode
from eth_utils import keccak

from chainwatch.multicall import Call, CallResult, chunked, decode_aggregate3, encode_aggregate3

A = "0x" + "11" * 20
B = "0x" + "22" * 20


class TestEncoding:
    def test_selector_and_layout(self) -> None:
        """Calldata is aggregate3's selector then (address,bool,bytes)[] with allowFailure set on every call."""
        data = encode_aggregate3([Call(target=A, data=b"\x01\x02"), Call(target=B, data=b"")])
        assert data[:4] == keccak(text="aggregate3((address,bool,bytes)[])")[:4] == bytes.fromhex("82ad56cb")
        (calls,) = decode(["(address,bool,bytes)[]"], data[4:])
        assert calls == ((A, True, b"\x01\x02"), (B, True, b""))

    def test_decodes_results_in_order(self) -> None:
        """Results come back in call order with their success flags."""
        raw = encode(["(bool,bytes)[]"], [[(True, b"\xaa"), (False, b"revert")]])
        assert decode_aggregate3(raw, 2) == [
            CallResult(success=True, data=b"\xaa"),
            CallResult(success=False, data=b"revert"),
        ]

    def test_count_mismatch_is_an_error(self) -> None:
        """A result list of the wrong length is refused rather than misattributed to positions."""
        raw = encode(["(bool,bytes)[]"], [[(True, b"")]])
        with pytest.raises(ValueError, match="1 results for 2 calls"):
            decode_aggregate3(raw, 2)


class TestChunking:
    @pytest.mark.parametrize(
        ("gases", "max_calls", "max_gas", "sizes"),
        [
            ([1] * 10, 4, 100, [4, 4, 2]),
            ([40, 40, 40, 40], 10, 100, [2, 2]),
            ([150, 10, 10], 10, 100, [1, 2]),  # an oversized call still gets read, alone
            ([], 5, 100, []),
            ([50, 50], 10, 100, [2]),  # exactly at the limit fits
        ],
    )
    def test_bounds(self, gases: list[int], max_calls: int, max_gas: int, sizes: list[int]) -> None:
        """Chunks respect both the call count and the gas bound, and keep every call exactly once."""
        calls = [Call(target=A, data=bytes([i]), gas=g) for i, g in enumerate(gases)]
        chunks = list(chunked(calls, max_calls=max_calls, max_gas=max_gas))
        assert [len(c) for c in chunks] == sizes
        assert [c for chunk in chunks for c in chunk] == calls

    def test_a_call_kept_with_the_next_is_never_cut_from_it(self) -> None:
        """A boundary that would fall right after a keep_with_next call moves past the call it keeps."""
        calls = [Call(target=A, data=bytes([i]), keep_with_next=(i == 2)) for i in range(6)]
        chunks = list(chunked(calls, max_calls=3, max_gas=10**9))
        assert [len(c) for c in chunks] == [4, 2]
        assert [c for chunk in chunks for c in chunk] == calls
