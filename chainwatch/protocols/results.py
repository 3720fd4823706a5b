"""Decoding the results of protocol reads, shared by the protocol modules: a failed or malformed result is a
`ReadError` (never a default that looks like "no position"), and token names degrade to addresses.

`fixed` decodes the hot reads (made for every account on every pass) with the own word decoder; `decoded`
keeps eth_abi for everything else. Both refuse the same data, so a module may use either for a shape."""

from __future__ import annotations

from typing import Any

from eth_abi.exceptions import DecodingError
from eth_utils import to_checksum_address

from chainwatch import words
from chainwatch.abi import decode
from chainwatch.multicall import CallResult
from chainwatch.protocols.base import ReadError


def decoded(types: list[str], result: CallResult, what: str) -> tuple[Any, ...]:
    """The values of one call's result; `what` names the call in the error."""
    if not result.success:
        raise ReadError(f"{what} reverted")
    try:
        return decode(types, result.data)
    except DecodingError as error:
        raise ReadError(f"{what} returned undecodable data: {type(error).__name__}") from None


def fixed(shape: words.Layout, result: CallResult, what: str) -> tuple[Any, ...]:
    """Like `decoded`, for a shape of fixed words compiled once with `words.layout`."""
    if not result.success:
        raise ReadError(f"{what} reverted")
    try:
        return words.decode(shape, result.data)
    except ValueError as error:
        raise ReadError(f"{what} returned undecodable data: {error}") from None


def nonzero_address(result: CallResult, what: str) -> str:
    """An address result, checksummed; the zero address means the contract is not set up: an error."""
    (address,) = decoded(["address"], result, what)
    if int(address, 16) == 0:
        raise ReadError(f"{what} returned the zero address")
    return to_checksum_address(address)


def token_symbol(result: CallResult, token: str) -> str:
    """ERC-20 `symbol()` as a string (or bytes32, as some old tokens return); the short address if neither."""
    if result.success:
        for kind in ("string", "bytes32"):
            try:
                text = decode([kind], result.data)[0]
            except (DecodingError, ValueError):  # ValueError: not UTF-8
                continue
            text = text.rstrip(b"\0").decode(errors="replace") if isinstance(text, bytes) else text
            if text.isprintable() and 0 < len(text) <= 32:
                return str(text)
    checksummed = to_checksum_address(token)
    return f"{checksummed[:6]}…{checksummed[-4:]}"
