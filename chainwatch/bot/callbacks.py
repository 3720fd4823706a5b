"""The filter routing button presses by their action; it hands the handler the address and argument decoded."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import CallbackQuery

from chainwatch.alerts.buttons import Action, BadCallback, parse_callback


class Callback(Filter):
    """Matches presses of buttons made for `action`; injects `pressed_address` and `pressed_argument`."""

    def __init__(self, action: Action) -> None:
        self.action = action

    async def __call__(self, query: CallbackQuery) -> bool | dict[str, Any]:
        try:
            pressed = parse_callback(query.data)
        except BadCallback:
            return False
        if pressed.action is not self.action:
            return False
        return {"pressed_address": pressed.address, "pressed_argument": pressed.argument}
