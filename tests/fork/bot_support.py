"""Shared pieces of the bot's fork tests: the chats, a user's message and the bot's reply, the alerts a chat got,
and the service started with the bot on and no operator watch."""

from __future__ import annotations

import re
from decimal import Decimal


from tests.fork.conftest import DEADLINE, Chain, aave_protocol
from tests.support.botapi import BotApiServer, SentMessage


ALICE, BOB = 1001, 1002  # private chats: the chat id is the user's id
GROUP, ADMIN, MEMBER = -2001, 501, 502
ALERT_KINDS = {"WARN", "CRITICAL", "LIQUIDATABLE", "RECOVERED"}


def morpho_protocol(chain: Chain) -> str:
    morpho = chain.devnet.morpho_blue
    assert morpho is not None
    return f"""
[[protocols]]
kind = "morpho_blue"
name = "morpho"
morpho = "{morpho.morpho}"
"""


async def say(bot_api: BotApiServer, chat: int, text: str, **who: object) -> SentMessage:
    """Writes `text` in `chat` as its user would and returns the bot's first reply."""
    after = len(bot_api.messages)
    bot_api.send_text(chat, text, **who)  # type: ignore[arg-type]
    return await bot_api.wait_for_message(chat, lambda m: not is_alert(m), after=after, timeout=DEADLINE)


async def standard_borrower(chain: Chain) -> str:
    """An Aave borrower of 1,000 USDC against 1 WETH (health 1.70 at WETH $2,000)."""
    account = chain.accounts[0]
    await chain.actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1000})
    return account


def is_alert(message: SentMessage) -> bool:
    words = message.text.split()
    return len(words) > 1 and words[1] in ALERT_KINDS


def alerts_to(bot_api: BotApiServer, chat: int) -> list[str]:
    return [m.text.split()[1] for m in bot_api.messages_to(chat) if is_alert(m)]


def shown_health(text: str, protocol: str) -> Decimal:
    match = re.search(rf"{protocol}[^\n]*?: health ([0-9.]+)", text)
    assert match, f"no health for {protocol} in {text!r}"
    return Decimal(match.group(1))


def block_of(text: str) -> int:
    match = re.search(r"at block (\d+)", text)
    assert match, f"no block in {text!r}"
    return int(match.group(1))


def all_protocols(chain: Chain) -> str:
    euler, curvance = chain.devnet.euler_v2, chain.devnet.curvance
    assert euler is not None and curvance is not None
    return aave_protocol(chain) + morpho_protocol(chain) + f"""
[[protocols]]
kind = "euler_v2"
name = "euler"
evc = "{euler.evc}"
vaults = ["{euler.borrow_vault}"]

[[protocols]]
kind = "curvance"
name = "curvance"
market_managers = ["{curvance.market_manager}"]
"""
