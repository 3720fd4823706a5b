"""Reading ABI-encoded results made of 32-byte words, by hand: the hot path's decoder.

Every pass decodes thousands of results of a handful of shapes (a few uints, an address, an array of uints), and
`eth_abi`'s general decoder costs far more than the node's answer. A `Layout` is such a shape, compiled once;
`decode` checks what `eth_abi`'s strict decoder checks (every word present, padding zero, a bool 0 or 1, an array's
offset past the head and inside the data) so that it returns the same values or raises `ValueError`, never a
value `eth_abi` would have refused. Anything else (strings, nested tuples, cold reads) stays with `eth_abi`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

WORD = 32


class _Kind(NamedTuple):
    """One value kind: 'uint' (with its bits), 'address' or 'bool'."""

    name: str
    bits: int = 256


class _Slot(NamedTuple):
    kind: _Kind
    array: bool  # a dynamic array of `kind`: the head word is its offset


_UINT256 = _Kind("uint")


class Layout(NamedTuple):
    types: tuple[str, ...]
    slots: tuple[_Slot, ...]
    plain: bool  # every slot a bare uint256: nothing to check but the length (the commonest hot shape)


def layout(*types: str) -> Layout:
    """A compiled result shape, e.g. `layout("uint256", "uint128")` or `layout("address[]", "uint256[]", "uint256")`."""
    slots = tuple(_slot(t) for t in types)
    return Layout(types=types, slots=slots, plain=all(s == _Slot(_UINT256, False) for s in slots))


def _slot(type_: str) -> _Slot:
    array = type_.endswith("[]")
    return _Slot(kind=_kind(type_.removesuffix("[]")), array=array)


def _kind(name: str) -> _Kind:
    if name in ("address", "bool"):
        return _Kind(name, 160 if name == "address" else 1)
    digits = name[4:] or "256"
    if name.startswith("uint") and digits.isdigit():
        bits = int(digits)
        if bits % 8 == 0 and 8 <= bits <= 256:
            return _Kind("uint", bits)
    raise ValueError(f"words.layout: {name!r} is not a fixed-word type (uintN, address, bool, or an array of one)")


def decode(shape: Layout, data: bytes) -> tuple[Any, ...]:
    """The values of `data` laid out as `shape`; ValueError naming the word at fault if the data does not fit."""
    head = len(shape.slots) * WORD
    if len(data) < head:
        raise ValueError(f"{len(data)} bytes, too short for the {head}-byte head of ({','.join(shape.types)})")
    if shape.plain:
        return tuple(int.from_bytes(data[at : at + WORD], "big") for at in range(0, head, WORD))
    values: list[Any] = []
    for i, slot in enumerate(shape.slots):
        word = int.from_bytes(data[i * WORD : (i + 1) * WORD], "big")
        if not slot.array:
            values.append(_value(slot.kind, word, i * WORD))
            continue
        # As eth_abi checks a tuple's pointers: past the head, and inside the data.
        if word < head or word >= len(data):
            raise ValueError(f"offset {word} of array {i} points outside the data ({head}..{len(data)})")
        values.append(read_array(slot.kind, data, word))
    return tuple(values)


def read_array(kind: _Kind, data: bytes, at: int) -> tuple[Any, ...]:
    """A dynamic array of `kind` whose length word is at byte `at`."""
    count = word_at(data, at)
    end = at + WORD + count * WORD
    if end > len(data):
        raise ValueError(f"array of {count} words at byte {at} runs past the {len(data)} bytes of data")
    if kind == _UINT256:  # nothing to check in a word
        return tuple(int.from_bytes(data[p : p + WORD], "big") for p in range(at + WORD, end, WORD))
    return tuple(_value(kind, int.from_bytes(data[p : p + WORD], "big"), p) for p in range(at + WORD, end, WORD))


def word_at(data: bytes, at: int) -> int:
    """The word at byte `at` as an unsigned integer."""
    if at + WORD > len(data):
        raise ValueError(f"no word at byte {at}: the data has {len(data)} bytes")
    return int.from_bytes(data[at : at + WORD], "big")


def _value(kind: _Kind, word: int, at: int) -> Any:
    if word >> kind.bits:
        raise ValueError(f"word at byte {at} is not a {kind.name}{'' if kind.name != 'uint' else kind.bits}: "
                         "non-zero padding")  # fmt: skip
    if kind.name == "uint":
        return word
    if kind.name == "address":
        return f"0x{word:040x}"  # lower-case, as eth_abi returns it
    return word == 1
