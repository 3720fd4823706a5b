"""The logs bloom check that spares quiet blocks any eth_getLogs."""

from chainwatch.bloom import BLOOM_BYTES, bloom_contains, bloom_with, may_hold

FEED = "0x" + "ab" * 20
POOL = "0x" + "cd" * 20
ANSWER = "0x" + "11" * 32
OTHER_TOPIC = "0x" + "22" * 32


def raw(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text[2:])


class TestBloom:
    def test_contains_what_was_added(self) -> None:
        """Items put in a bloom are found; a fresh item is (almost surely) not."""
        bloom = bloom_with([raw(FEED), raw(ANSWER)])
        assert bloom_contains(bloom, raw(FEED)) and bloom_contains(bloom, raw(ANSWER))
        assert not bloom_contains(bloom, raw(POOL))

    def test_known_vector(self) -> None:
        """Matches Ethereum's M3:2048 layout on a hand-checked value (keccak of 20 zero bytes)."""
        # keccak256(0x00*20) = 5380c7b7ae81a58eb98d9c78de4a1fd7fd9535fc953ed2be602daaa41767312a
        # bit pairs 0x5380, 0xc7b7, 0xae81 -> & 2047 = 896, 1975, 1665
        bloom = bloom_with([bytes(20)])
        set_bits = {i for i in range(2048) if bloom[BLOOM_BYTES - 1 - i // 8] >> (i % 8) & 1}
        assert set_bits == {896, 1975, 1665}

    def test_needs_both_an_emitter_and_an_event(self) -> None:
        """A block counts as possibly relevant only if a watched emitter and a watched event both appear."""
        assert may_hold(bloom_with([raw(FEED), raw(ANSWER)]), [FEED, POOL], [ANSWER])
        assert not may_hold(bloom_with([raw(FEED), raw(OTHER_TOPIC)]), [FEED], [ANSWER])
        assert not may_hold(bloom_with([raw(POOL), raw(ANSWER)]), [FEED], [ANSWER])
        assert not may_hold(bytes(BLOOM_BYTES), [FEED], [ANSWER])

    def test_missing_bloom_means_look(self) -> None:
        """A head without a usable bloom is treated as possibly relevant, never as quiet."""
        assert may_hold(b"", [FEED], [ANSWER])
