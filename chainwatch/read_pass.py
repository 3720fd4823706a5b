"""One read pass: every target's calls in one batched, block-pinned read, identical calls made once, each target's
results decoded by its own plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chainwatch.index import Target
from chainwatch.model import Reading
from chainwatch.multicall import Call
from chainwatch.protocols.base import AccountReading, LendingProtocol, ReadError
from chainwatch.reader import ReadFailed, Reader

Outcome = tuple[Target, AccountReading | ReadError | ReadFailed]


def readings_of(outcomes: Iterable[Outcome]) -> list[Reading]:
    return [r for _, outcome in outcomes if isinstance(outcome, AccountReading) for r in outcome.readings]


async def read_targets(
    protocols: Mapping[str, LendingProtocol], reader: Reader, targets: Iterable[Target], block: int, *,
    detailed: bool = False,
) -> list[tuple[Target, AccountReading | ReadError | ReadFailed]]:
    """Each target's reading at `block`, all targets' calls in one batched pass (`detailed`: with per-asset lines).

    Identical calls (a market's state, an oracle's prices) are made once per pass and shared by every account
    that asked for them. A target whose calls fell in a chunk that could not be read gets ReadFailed (the rest
    are still read); ReadFailed is raised only when nothing could be read.
    """
    plans = [(target, protocols[target.protocol].plan(target.account, detailed=detailed)) for target in sorted(targets)]
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
    outcomes: list[tuple[Target, AccountReading | ReadError | ReadFailed]] = []
    for (target, plan), indexes in zip(plans, slots):
        mine = [results[i] for i in indexes]
        if any(result is None for result in mine):
            outcomes.append((target, ReadFailed(block, len(plan.calls), "its batch could not be read")))
            continue
        try:
            outcomes.append((target, plan.decode(mine, block)))  # type: ignore[arg-type]
        except ReadError as error:
            outcomes.append((target, error))
    return outcomes


def _call_key(call: Call) -> tuple[str, bytes]:
    return (call.target.lower(), call.data)
