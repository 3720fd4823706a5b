"""The exposure index: which accounts a feed's price move can touch."""

from chainwatch.index import ExposureIndex, Target

A = Target(protocol="neverland", account="0xA")
B = Target(protocol="neverland", account="0xB")
C = Target(protocol="other", account="0xA")


class TestExposureIndex:
    def test_price_move_marks_only_exposed_accounts(self) -> None:
        """A feed marks the accounts holding an asset it prices, on that protocol only."""
        index = ExposureIndex()
        index.set_feeds("neverland", {"0xfeed1": frozenset({"weth"}), "0xfeed2": frozenset({"usdc"})})
        index.set_feeds("other", {"0xfeed1": frozenset({"weth2"})})
        index.set_exposure(A, frozenset({"weth", "usdc"}))
        index.set_exposure(B, frozenset({"usdc"}))
        index.set_exposure(C, frozenset({"weth"}))  # holds "weth" but on a protocol that prices weth2 there
        assert index.targets_priced_by("0xfeed1") == {A}
        assert index.targets_priced_by("0xfeed2") == {A, B}
        assert index.targets_priced_by("0xunknown") == set()

    def test_exposure_is_replaced_not_accumulated(self) -> None:
        """After an account repays and withdraws an asset, that asset's feed no longer marks it."""
        index = ExposureIndex()
        index.set_feeds("neverland", {"0xfeed1": frozenset({"weth"})})
        index.set_exposure(A, frozenset({"weth"}))
        index.set_exposure(A, frozenset())
        assert index.targets_priced_by("0xfeed1") == set()

    def test_feeds_replaced_per_protocol(self) -> None:
        """Re-resolving one protocol's feeds drops its old feed without touching another protocol's."""
        index = ExposureIndex()
        index.set_feeds("neverland", {"0xold": frozenset({"weth"})})
        index.set_feeds("other", {"0xold": frozenset({"weth"})})
        index.set_feeds("neverland", {"0xnew": frozenset({"weth"})})
        assert index.feeds() == {"0xold", "0xnew"}
        index.set_exposure(A, frozenset({"weth"}))
        assert index.targets_priced_by("0xold") == set()
        assert index.targets_priced_by("0xnew") == {A}

    def test_equal_exposures_are_held_once_and_stay_right_past_the_cap(self) -> None:
        """Accounts holding the same assets share one set (memory at 100,000 accounts); clearing the shared sets
        when too many combinations were seen changes no target's exposure."""
        index = ExposureIndex()
        index.set_exposure(A, frozenset({"weth", "usdc"}))
        index.set_exposure(B, frozenset({"usdc", "weth"}))
        assert index.exposure_of(A) is index.exposure_of(B)
        for i in range(5_000):
            index.set_exposure(Target(protocol="neverland", account=f"0x{i:040x}"), frozenset({f"asset{i}"}))
        assert index.exposure_of(A) == {"weth", "usdc"} and index.targets_holding("neverland", frozenset({"usdc"})) == {A, B}
