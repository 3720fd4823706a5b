"""PlanCache: an account's calls served again only while what they were built from is unchanged."""

from chainwatch.protocols.plans import PlanCache, shared


def test_served_again_while_the_basis_is_equal_and_rebuilt_when_it_changes() -> None:
    built: list[tuple[str, object]] = []

    def build(account: str, basis: tuple[str, ...]) -> tuple[str, ...]:
        built.append((account, basis))
        return (account, *basis)

    cache: PlanCache[tuple[str, ...], tuple[str, ...]] = PlanCache()
    first = cache.get("alice", ("m1",), build)
    assert cache.get("alice", tuple(["m1"]), build) is first  # an equal basis, another object: reused
    assert cache.get("alice", ("m1", "m2"), build) == ("alice", "m1", "m2")  # a new market: rebuilt
    assert cache.get("alice", ("m1",), build) == first  # and back: rebuilt again, not an old entry
    assert cache.get("bob", ("m1",), build) == ("bob", "m1")  # per account
    assert built == [("alice", ("m1",)), ("alice", ("m1", "m2")), ("alice", ("m1",)), ("bob", ("m1",))]
    assert len(cache) == 2  # one entry per account, whatever its history


def test_shared_gives_one_object_for_equal_values() -> None:
    a, b = tuple(["x", "y"]), tuple(["x", "y"])
    assert a is not b and shared(a) is shared(b)
