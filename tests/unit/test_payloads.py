"""Decoding WebSocket frames: each malformed shape is named by kind, counted, and logged sparingly."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from chainwatch.listeners.payloads import (
    Malformed,
    MalformedTally,
    head_from_notification,
    log_from_notification,
    message_from_frame,
)

HEAD = {"number": "0x10", "hash": "0x" + "ab" * 32, "parentHash": "0x" + "cd" * 32, "logsBloom": "0x" + "00" * 256}
LOG = {"address": "0x" + "11" * 20, "topics": ["0x" + "22" * 32], "data": "0x", "blockNumber": "0x10",
       "blockHash": "0x" + "ab" * 32, "logIndex": "0x0", "transactionHash": "0x" + "33" * 32}  # fmt: skip


def raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(json.dumps(value).encode())


class TestWellFormed:
    def test_a_notification_decodes_to_its_head(self) -> None:
        """A well-formed newHeads frame gives its envelope and then its head."""
        frame = json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": "0x1", "result": HEAD}})
        message = message_from_frame(frame)
        assert message.params is not None and message.params.subscription == "0x1"
        assert head_from_notification(message.params.result).number == 16

    def test_a_log_decodes(self) -> None:
        """A well-formed logs result decodes, lower-cased, with its block."""
        assert log_from_notification(raw(LOG)).block_number == 16


class TestMalformed:
    @pytest.mark.parametrize("frame", ["{not json", b"\x00\xff", ""])
    def test_a_frame_that_is_not_json(self, frame: str | bytes) -> None:
        """Text or bytes that do not parse are `not_json`."""
        with pytest.raises(Malformed) as caught:
            message_from_frame(frame)
        assert caught.value.kind == "not_json"

    @pytest.mark.parametrize("frame", ['{"id": "one"}', '{"params": {"result": 1}}', "[1, 2]", '"0x1"'])
    def test_json_that_is_no_json_rpc_message(self, frame: str) -> None:
        """JSON of the wrong shape (a string id, params without a subscription, an array) is `envelope`."""
        with pytest.raises(Malformed) as caught:
            message_from_frame(frame)
        assert caught.value.kind == "envelope"

    @pytest.mark.parametrize(
        "head",
        [
            {**HEAD, "hash": "0x" + "ab" * 31},  # wrong-length hash
            {**HEAD, "parentHash": "0x" + "zz" * 32},  # not hex
            {key: value for key, value in HEAD.items() if key != "number"},  # missing field
            {**HEAD, "number": 16},  # a number where a hex quantity belongs
            {**HEAD, "logsBloom": "0x00"},  # a bloom of the wrong length
            "0x" + "ab" * 32,  # a result of the wrong type
        ],
    )
    def test_a_malformed_head(self, head: Any) -> None:
        """Every head that cannot be trusted to name its block is `head`."""
        with pytest.raises(Malformed) as caught:
            head_from_notification(raw(head))
        assert caught.value.kind == "head"

    @pytest.mark.parametrize(
        "item",
        [
            {key: value for key, value in LOG.items() if key != "blockHash"},  # missing field
            {**LOG, "topics": "0x" + "22" * 32},  # topics not a list
            {**LOG, "address": "0x1234"},  # short address
            {**LOG, "data": "0x123"},  # odd-length data
            [LOG],  # a result of the wrong type
            None,
        ],
    )
    def test_a_malformed_log(self, item: Any) -> None:
        """Every log that cannot be placed in its block is `log`."""
        with pytest.raises(Malformed) as caught:
            log_from_notification(raw(item))
        assert caught.value.kind == "log"


class TestTally:
    def test_counts_every_frame_and_logs_at_powers_of_two(self) -> None:
        """Ten bad heads and one bad log: counted exactly, logged at the 1st, 2nd, 4th and 8th head and the 1st log."""
        tally = MalformedTally()
        with capture_logs() as logs:
            for _ in range(10):
                tally.note(Malformed("head", "bad hash"), "ws_urls[0]")
            tally.note(Malformed("log", "missing blockHash"), "ws_urls[0]")
        assert tally.counts == {"head": 10, "log": 1}
        logged = [(e["kind"], e["count"]) for e in logs if e["event"] == "listener.malformed_payload"]
        assert logged == [("head", 1), ("head", 2), ("head", 4), ("head", 8), ("log", 1)]
