"""What a WebSocket frame from the node holds, decoded once; a malformed one is named by kind, counted and skipped.

A node (or a proxy in front of it) can send a frame that is not JSON, a notification missing a field, a head
whose hash has the wrong length, or a result of the wrong type. None of that may stop the listener: the frame is
skipped, and what it would have told is recovered elsewhere (a skipped head by the next head's gap fill, a skipped
log by its block's bloom-driven `eth_getLogs`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import structlog

from chainwatch import metrics
from chainwatch.chain import Head, Log, head_from_json, log_from_json

log = structlog.get_logger(__name__)


class Notification(msgspec.Struct):
    subscription: str
    result: msgspec.Raw


class Message(msgspec.Struct):
    """Either a response to one of our requests (id) or a subscription notification (params)."""

    id: int | None = None
    result: Any = None
    error: Any = None
    method: str | None = None
    params: Notification | None = None


_decode_message = msgspec.json.Decoder(Message).decode


class Malformed(Exception):
    """A frame that cannot be used; `kind` is one of a few fixed words (a metric label), never payload text."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def message_from_frame(frame: str | bytes) -> Message:
    """The JSON-RPC envelope of a frame; Malformed("not_json" | "envelope") when it has none."""
    try:
        return _decode_message(frame)
    except msgspec.ValidationError as error:
        raise Malformed("envelope", str(error)) from None
    except msgspec.DecodeError as error:
        raise Malformed("not_json", str(error)) from None


def head_from_notification(raw: msgspec.Raw) -> Head:
    """A `newHeads` result; Malformed("head") when a field is missing, mistyped or of the wrong length."""
    try:
        return head_from_json(raw)
    except (msgspec.DecodeError, ValueError) as error:  # ValueError: hex that does not parse
        raise Malformed("head", str(error)) from None


def log_from_notification(raw: msgspec.Raw) -> Log:
    """A `logs` result; Malformed("log") when a field is missing, mistyped or of the wrong length."""
    try:
        return log_from_json(raw)
    except (msgspec.DecodeError, ValueError) as error:
        raise Malformed("log", str(error)) from None


class MalformedTally:
    """Counts skipped frames by kind. Logs the first of each kind, then only at the 2nd, 4th, 8th... so that a
    node sending garbage on every frame costs a few log lines, not one per frame."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def note(self, error: Malformed, endpoint: str) -> None:
        self.counts[error.kind] += 1
        count = self.counts[error.kind]
        metrics.MALFORMED_PAYLOADS.labels(error.kind).inc()
        if count & (count - 1) == 0:
            log.warning("listener.malformed_payload", kind=error.kind, count=count, endpoint=endpoint,
                        reason=error.reason[:200])  # fmt: skip
