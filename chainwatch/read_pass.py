"""One read pass: every target's calls in one batched, block-pinned read, identical calls made once, each target's
results decoded by its own plan. A pass may also be cut into chunks of targets (`plan_chunks`), each read as one
`aggregate3`, so that the first chunk's alerts need not wait for the last chunk's answer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from chainwatch.index import Target
from chainwatch.model import Reading
from chainwatch.multicall import Call
from chainwatch.protocols.base import AccountReading, LendingProtocol, ReadError, ReadPlan
from chainwatch.reader import ReadFailed, Reader
from chainwatch.stage_timings import TIMINGS

Outcome = tuple[Target, AccountReading | ReadError | ReadFailed]
Planned = tuple[Target, ReadPlan]


def readings_of(outcomes: Iterable[Outcome]) -> list[Reading]:
    return [r for _, outcome in outcomes if isinstance(outcome, AccountReading) for r in outcome.readings]


async def read_targets(
    protocols: Mapping[str, LendingProtocol], reader: Reader, targets: Iterable[Target], block: int, *,
    detailed: bool = False,
) -> list[Outcome]:
    """Each target's reading at `block`, all targets' calls in one batched pass (`detailed`: with per-asset lines).

    Identical calls (a market's state, an oracle's prices) are made once per pass and shared by every account
    that asked for them. A target whose calls fell in a chunk that could not be read gets ReadFailed (the rest
    are still read); ReadFailed is raised only when nothing could be read.
    """
    return await read_planned(reader, _plans(protocols, sorted(targets), detailed), block)


def plan_chunks(
    protocols: Mapping[str, LendingProtocol], targets: Sequence[Target], max_calls: int
) -> Iterator[list[Planned]]:
    """`targets`' plans cut, in the order given, into runs whose distinct calls fit one `aggregate3` of
    `max_calls` (a target with more calls than that gets a run of its own, which the reader splits). Planned as
    they are taken, so that the first run can be sent before the last is encoded.

    The first run holds an eighth of that, and each next one twice the one before up to `max_calls`: the riskiest
    targets' answer (and so their alert) comes back sooner, at the cost of a few more requests in a large pass."""
    current: list[Planned] = []
    keys: set[tuple[str, bytes]] = set()
    room = max(1, max_calls // 8)
    for target in targets:
        (planned,) = _plans(protocols, (target,), False)
        mine = {_call_key(call) for call in planned[1].calls}
        if current and len(keys | mine) > room:
            yield current
            current, keys = [], set()
            room = min(max_calls, 2 * room)
        current.append(planned)
        keys |= mine
    if current:
        yield current


async def read_planned(reader: Reader, plans: Sequence[Planned], block: int) -> list[Outcome]:
    """Reads planned targets at `block`, identical calls once (see `read_targets`)."""
    unique: list[Call] = []
    index_of: dict[tuple[str, bytes], int] = {}
    slots: list[list[int]] = []  # per plan, where each of its calls sits among the unique ones
    for _, plan in plans:
        indexes = []
        for call in plan.calls:
            key = _call_key(call)
            index = index_of.get(key)
            if index is None:
                index = index_of[key] = len(unique)
                unique.append(call)
            indexes.append(index)
        slots.append(indexes)
    results = await reader.read_what_can_be_read(unique, block)
    outcomes: list[Outcome] = []
    for (target, plan), indexes in zip(plans, slots):
        mine = [results[i] for i in indexes]
        if any(result is None for result in mine):
            outcomes.append((target, ReadFailed(block, len(plan.calls), "its batch could not be read")))
            continue
        try:
            with TIMINGS.timed("decode"):
                outcomes.append((target, plan.decode(mine, block)))  # type: ignore[arg-type]
        except ReadError as error:
            outcomes.append((target, error))
    return outcomes


def _plans(protocols: Mapping[str, LendingProtocol], targets: Iterable[Target], detailed: bool) -> list[Planned]:
    with TIMINGS.timed("encode"):
        return [(target, protocols[target.protocol].plan(target.account, detailed=detailed)) for target in targets]


def _call_key(call: Call) -> tuple[str, bytes]:
    return (call.target.lower(), call.data)
