"""Inline buttons' callback data: self-contained, at most 64 bytes, and refused when forged."""

from __future__ import annotations

import pytest

from chainwatch.alerts.buttons import (
    Action, BadCallback, alert_buttons, forget_buttons, parse_callback, position_tag, watch_button,
)
from chainwatch.model import PositionKey

ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"
KEY = PositionKey(protocol="a-long-protocol-name-for-a-fork", account=ACCOUNT, market="0x" + "ab" * 32)


def test_every_button_fits_telegrams_64_bytes_and_decodes_back() -> None:
    """Alert, watch and forget buttons all fit and name the same address and argument after a round trip."""
    buttons = [b for kb in (alert_buttons(KEY), watch_button(ACCOUNT), forget_buttons()) for row in kb for b in row]
    for button in buttons:
        assert len(button.data.encode()) <= 64
    pressed = [parse_callback(b.data) for b in buttons]
    assert [p.action for p in pressed] == [Action.POSITION, Action.MUTE, Action.CHECK, Action.WATCH, Action.FORGET,
                                           Action.FORGET]  # fmt: skip
    assert {p.address for p in pressed[:4]} == {ACCOUNT}
    assert pressed[0].argument == position_tag(KEY) and pressed[1].argument == "3600"
    assert [p.argument for p in pressed[4:]] == ["yes", "no"]


@pytest.mark.parametrize("data", [None, "", "x" * 65, "nope:00", "pos:zz", "pos:" + "g" * 40, "mute"])
def test_forged_or_foreign_data_is_refused(data: str | None) -> None:
    """Data this bot did not make raises BadCallback instead of reaching a handler."""
    with pytest.raises(BadCallback):
        parse_callback(data)
