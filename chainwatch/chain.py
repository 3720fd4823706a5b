"""What the chain tells chainwatch: new block heads and logs, decoded once from JSON-RPC into typed records.

The same decoders serve the WebSocket subscription and `eth_getLogs` backfill, so a log looks the same to
the rest of chainwatch whichever way it arrived.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from chainwatch.bloom import may_hold
from chainwatch.model import Record


class Head(Record, frozen=True, kw_only=True, tag="head"):
    number: int
    hash: str
    parent_hash: str
    logs_bloom: bytes = b""


class Log(Record, frozen=True, kw_only=True, tag="log"):
    address: str
    topics: tuple[str, ...]
    data: bytes
    block_number: int
    block_hash: str
    log_index: int
    transaction_hash: str
    removed: bool = False

    @property
    def topic0(self) -> str | None:
        return self.topics[0] if self.topics else None

    @property
    def identity(self) -> tuple[str, int]:
        return (self.block_hash, self.log_index)


ChainEvent = Head | Log


class _RpcHead(msgspec.Struct, rename="camel"):
    number: str
    hash: str
    parent_hash: str
    logs_bloom: str = ""


class _RpcLog(msgspec.Struct, rename="camel"):
    address: str
    topics: list[str]
    data: str
    block_number: str
    block_hash: str
    log_index: str
    transaction_hash: str
    removed: bool = False


# Notifications are checked for shape as they are decoded: a pushed hash of the wrong length would otherwise become
# a block nobody can fetch. (HTTP results are answers to our own questions and are taken as they come.)
_Quantity = Annotated[str, Meta(pattern=r"^0x[0-9a-fA-F]{1,64}$")]
_Hash = Annotated[str, Meta(pattern=r"^0x[0-9a-fA-F]{64}$")]
_Address = Annotated[str, Meta(pattern=r"^0x[0-9a-fA-F]{40}$")]
_Bloom = Annotated[str, Meta(pattern=r"^(0x([0-9a-fA-F]{512})?)?$")]
_Data = Annotated[str, Meta(pattern=r"^0x([0-9a-fA-F]{2})*$")]


class _PushedHead(msgspec.Struct, rename="camel"):
    number: _Quantity
    hash: _Hash
    parent_hash: _Hash
    logs_bloom: _Bloom = ""


class _PushedLog(msgspec.Struct, rename="camel"):
    address: _Address
    topics: list[_Hash]
    data: _Data
    block_number: _Quantity
    block_hash: _Hash
    log_index: _Quantity
    transaction_hash: _Hash
    removed: bool = False


_decode_pushed_head = msgspec.json.Decoder(_PushedHead).decode
_decode_pushed_log = msgspec.json.Decoder(_PushedLog).decode


def head_from_rpc(raw: Any) -> Head:
    """A head from an `eth_getBlockByNumber` result (already parsed JSON)."""
    return _head(msgspec.convert(raw, _RpcHead))


def head_from_json(raw: bytes | msgspec.Raw) -> Head:
    """A head from a `newHeads` notification's raw JSON; msgspec.ValidationError when its shape is wrong."""
    return _head(_decode_pushed_head(raw))  # type: ignore[arg-type]


def _head(rpc: _RpcHead | _PushedHead) -> Head:
    return Head(
        number=int(rpc.number, 16),
        hash=rpc.hash.lower(),
        parent_hash=rpc.parent_hash.lower(),
        logs_bloom=bytes.fromhex(rpc.logs_bloom.removeprefix("0x")),
    )


def log_from_rpc(raw: Any) -> Log:
    """A log from an `eth_getLogs` result (already parsed JSON); topics and addresses lower-cased."""
    return _log(msgspec.convert(raw, _RpcLog))


def log_from_json(raw: bytes | msgspec.Raw) -> Log:
    """A log from a `logs` notification's raw JSON; msgspec.ValidationError when its shape is wrong."""
    return _log(_decode_pushed_log(raw))  # type: ignore[arg-type]


def _log(rpc: _RpcLog | _PushedLog) -> Log:
    return Log(
        address=rpc.address.lower(),
        topics=tuple(topic.lower() for topic in rpc.topics),
        data=bytes.fromhex(rpc.data.removeprefix("0x")),
        block_number=int(rpc.block_number, 16),
        block_hash=rpc.block_hash.lower(),
        log_index=int(rpc.log_index, 16),
        transaction_hash=rpc.transaction_hash.lower(),
        removed=rpc.removed,
    )


class LogFilter(Record, frozen=True, kw_only=True):
    """Which logs to listen to: emitters and, per emitter set, the event signatures (topic0) of interest."""

    addresses: tuple[str, ...]
    topic0s: tuple[str, ...]

    def as_rpc(self) -> dict[str, Any]:
        return {"address": list(self.addresses), "topics": [list(self.topic0s)]}

    def may_match_block(self, head: Head) -> bool:
        """Whether the head's logs bloom leaves room for a log this filter wants."""
        return may_hold(head.logs_bloom, self.addresses, self.topic0s)


def topic_address(topic: str) -> str:
    """The address held in an indexed address topic (lower-case)."""
    return "0x" + topic[-40:]
