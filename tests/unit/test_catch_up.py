"""A warm restart's catch-up order: riskiest first, slices, skips, and a pause after a failed read."""

from __future__ import annotations

import pytest

from chainwatch.catch_up import CatchUp
from chainwatch.index import Target


def targets(*accounts: str) -> list[Target]:
    return [Target(protocol="p", account=a) for a in accounts]


def test_slices_come_in_the_given_order_and_skip_what_no_longer_needs_a_read() -> None:
    catch_up = CatchUp(targets("0xZ", "0xA", "0xB", "0xC", "0xD"), slice_size=2)
    read_for_an_event = set(targets("0xA"))
    assert catch_up.take(lambda t: t not in read_for_an_event) == targets("0xZ", "0xB")
    assert catch_up.left == 2 and not catch_up.done
    assert catch_up.take(lambda t: True) == targets("0xC", "0xD")
    assert not catch_up.has_slices and not catch_up.ready() and catch_up.take(lambda t: True) == []
    assert catch_up.total == 5


def test_it_is_done_only_once_every_target_handed_out_has_been_read() -> None:
    catch_up = CatchUp(targets("0xZ", "0xA"), slice_size=2)
    catch_up.take(lambda t: True)
    catch_up.settle(set(targets("0xZ")))  # 0xZ's read failed: still pending
    assert not catch_up.has_slices and not catch_up.done
    catch_up.settle(set())
    assert catch_up.done


def test_a_failed_read_holds_the_next_slice_back_for_the_pause() -> None:
    now = [100.0]
    catch_up = CatchUp(targets("0xA", "0xB"), slice_size=1, monotonic=lambda: now[0])
    assert catch_up.ready()
    catch_up.take(lambda t: True)
    catch_up.pause(2.0)
    assert not catch_up.ready() and catch_up.seconds_until_ready() == 2.0
    now[0] = 102.0
    assert catch_up.ready() and catch_up.seconds_until_ready() == 0.0


def test_a_slice_holds_at_least_one_target() -> None:
    with pytest.raises(ValueError, match="slice_size"):
        CatchUp(targets("0xA"), slice_size=0)
