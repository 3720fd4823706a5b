"""Planning devnet transactions: nonces per sender, predicted addresses, and block-sized waves."""

from __future__ import annotations

import pytest
from web3 import Web3
from web3.utils.address import get_create_address

from chainwatch.devnet.transactions import Tx, TxFailed, TxPlan, waves

ALICE = Web3.to_checksum_address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
BOB = Web3.to_checksum_address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")


def tx(gas: int, action: str = "t") -> Tx:
    return Tx(action=action, sender=ALICE, nonce=0, to=BOB, data="0x", gas=gas)


class TestTxPlan:
    def test_counts_nonces_per_sender(self) -> None:
        """Each sender's transactions take consecutive nonces from its own start."""
        plan = TxPlan({ALICE: 5, BOB: 0})
        plan.call("a1", ALICE, BOB, "0x")
        plan.call("b1", BOB.lower(), ALICE, "0x")
        plan.call("a2", ALICE, BOB, "0x")
        assert [(t.action, t.nonce) for t in plan.txs] == [("a1", 5), ("b1", 0), ("a2", 6)]

    def test_deploy_predicts_the_create_address(self) -> None:
        """A planned deploy returns the address CREATE gives for its sender and nonce."""
        plan = TxPlan({ALICE: 7})
        assert plan.deploy("d", ALICE, "0x00") == get_create_address(ALICE, 7)

    def test_unknown_sender_is_an_error(self) -> None:
        """A sender whose nonce was not fetched cannot be planned for."""
        with pytest.raises(KeyError, match="not given"):
            TxPlan({}).call("x", ALICE, BOB, "0x")


class TestWaves:
    @pytest.mark.parametrize(
        ("gases", "sizes"),
        [
            ([10, 10, 10], [3]),
            ([10, 10, 11], [2, 1]),
            ([30, 1, 29, 30], [1, 2, 1]),
            ([], []),
        ],
    )
    def test_split_where_the_block_is_full(self, gases: list[int], sizes: list[int]) -> None:
        """Consecutive transactions share a wave while their gas limits fit one block of 30."""
        split = waves([tx(g) for g in gases], block_gas_limit=30)
        assert [len(w) for w in split] == sizes

    def test_transaction_larger_than_a_block_is_an_error(self) -> None:
        """A gas limit above the block's could never be mined: named at once."""
        with pytest.raises(TxFailed, match="too big"):
            waves([tx(31, action="too big")], block_gas_limit=30)
