"""Tiny ABI helpers shared by protocol modules: calldata from a signature, and typed decoding of results."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak


@lru_cache(maxsize=None)
def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


@lru_cache(maxsize=None)
def event_topic(signature: str) -> str:
    """topic0 of an event, lower-case hex, as logs carry it."""
    return "0x" + keccak(text=signature).hex()


def _argument_types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : signature.rindex(")")]
    return [part for part in _split_top_level(inner) if part]


def _split_top_level(types: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in types:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    parts.append(current)
    return parts


def calldata(signature: str, *args: Any) -> bytes:
    """`calldata("getUserAccountData(address)", user)`: selector plus ABI-encoded arguments."""
    return selector(signature) + abi_encode(_argument_types(signature), list(args))


def decode(types: list[str], data: bytes) -> tuple[Any, ...]:
    return tuple(abi_decode(types, data))
