"""The CPU of one price-block read pass without a node: planning, aggregate3 encoding, result decoding.

    .venv/bin/python -m benchmarks.codec_pass [--positions 1000] [--passes 20] [--reserves 3]

N Aave accounts (the devnet's three reserves by default) read through `read_pass.read_targets` with a reader
that does everything a real one does except the eth_call: the calls are chunked and encoded as `aggregate3`,
and the node's answer (built once, outside the timings) is decoded. Prints the median per pass of the whole
pass, of the encoding and of the aggregate3 decoding; the rest is planning, deduplication and the accounts'
own decoding. Figures only, nothing asserted. To compare with an older commit, run this file with that
commit's `chainwatch/` first on PYTHONPATH (e.g. exported with `git archive REV chainwatch`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

import chainwatch
from chainwatch import multicall
from chainwatch.index import Target
from chainwatch.multicall import Call, CallResult, chunked
from chainwatch.protocols.aave_v3 import AaveV3
from chainwatch.read_pass import read_targets

_ANSWERS = {
    keccak(text="getUserAccountData(address)")[:4]: encode(
        ["uint256"] * 6, [5000 * 10**8, 2000 * 10**8, 0, 8000, 7500, 18 * 10**17]
    ),
    keccak(text="getUserConfiguration(address)")[:4]: encode(["uint256"], [0b0110]),
}


class OfflineReader:
    """A Reader without the node: chunks, encodes, answers from a table, decodes. Times the codec's two halves."""

    def __init__(self, reserves: int) -> None:
        self.answers: dict[bytes, bytes] = {}
        self.prices = encode(["uint256[]"], [[2000 * 10**8 + i for i in range(reserves)]])
        self.encoding = self.decoding = 0.0

    async def read_what_can_be_read(self, calls: Sequence[Call], block: int) -> list[CallResult | None]:
        results: list[CallResult | None] = []
        for chunk in chunked(calls, max_calls=200, max_gas=20_000_000):
            start = time.perf_counter()
            request = multicall.encode_aggregate3(chunk)
            self.encoding += time.perf_counter() - start
            answer = self.answers.get(request)
            if answer is None:  # the node's part: built once, not timed
                answer = self.answers[request] = encode(["(bool,bytes)[]"], [[(True, self._answer(c)) for c in chunk]])
            start = time.perf_counter()
            results += multicall.decode_aggregate3(answer, len(chunk))
            self.decoding += time.perf_counter() - start
        return results

    def _answer(self, call: Call) -> bytes:
        return _ANSWERS.get(call.data[:4], self.prices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--reserves", type=int, default=3)
    args = parser.parse_args()
    aave = AaveV3("aave", to_checksum_address("0x" + "99" * 20))
    aave.pool, aave.oracle = to_checksum_address("0x" + "aa" * 20), to_checksum_address("0x" + "bb" * 20)
    aave.reserves = {f"0x{i + 1:040x}": i for i in range(args.reserves)}
    targets = [Target(protocol="aave", account=to_checksum_address(f"0x{0xD1 << 152 | i:040x}"))
               for i in range(args.positions)]  # fmt: skip
    reader = OfflineReader(args.reserves)
    totals, encodings, decodings = [], [], []
    for _ in range(args.passes + 1):
        reader.encoding = reader.decoding = 0.0
        start = time.perf_counter()
        outcomes = asyncio.run(read_targets({"aave": aave}, reader, targets, 7))  # type: ignore[arg-type]
        totals.append(time.perf_counter() - start)
        encodings.append(reader.encoding)
        decodings.append(reader.decoding)
        assert len(outcomes) == args.positions and all(hasattr(o, "readings") for _, o in outcomes)
    # The first pass builds the node's answers (and, with plans kept, every plan): left out of the medians.
    ms = {name: 1000 * statistics.median(values[1:]) for name, values in
          (("pass", totals), ("encode", encodings), ("decode", decodings))}  # fmt: skip
    print(f"code: {chainwatch.__file__}")
    print(f"{args.positions} Aave positions, {args.reserves} reserves, median of {args.passes} passes (ms):")
    print(f"  whole pass {ms['pass']:8.2f}   aggregate3 encode {ms['encode']:7.2f}"
          f"   aggregate3 decode {ms['decode']:7.2f}   plan + dedupe + account decode {ms['pass'] - ms['encode'] - ms['decode']:7.2f}")
    print(f"  first pass (plans built) {1000 * totals[0]:8.2f}")


if __name__ == "__main__":
    main()
