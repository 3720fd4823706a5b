"""The bot end to end, reading: /check, an address alone, alert buttons, /repay on every protocol, alert detail."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from tests.fork.bot_support import (
    ALICE, all_protocols, alerts_to, block_of, is_alert, say, shown_health,
    standard_borrower,
)
from tests.fork.conftest import DEADLINE, Chain, Running
from tests.fork.test_repay import CASES as REPAY_CASES
from tests.fork.test_spine import health_at
from tests.support.botapi import BotApiServer


class TestReading:
    async def test_check_shows_the_health_the_pool_reports_at_that_block(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """/check's health factor (rounded down) is getUserAccountData's at the block it names."""
        account = chain.accounts[0]
        await chain.actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1111})
        await start_bot()
        await say(bot_api, ALICE, f"/add {account} vault")
        await chain.actions.set_price("WETH", 1777)
        reply = (await say(bot_api, ALICE, "/check")).text
        block = block_of(reply)
        assert shown_health(reply, "neverland") == await health_at(chain, account, block)
        assert "% from liquidation" in reply

    async def test_an_address_alone_is_checked_with_a_watch_button(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Pasting an address reads it once; its Watch button then watches it (and the press is answered)."""
        account = await standard_borrower(chain)
        running = await start_bot()
        reply = await say(bot_api, ALICE, account)
        assert shown_health(reply.text, "neverland") == Decimal("1.700")
        ((text, data),) = [b for row in reply.buttons for b in row]
        assert text == "Watch"
        after = len(bot_api.messages)
        bot_api.press_button(ALICE, reply.message_id, data)
        watching = await bot_api.wait_for_message(ALICE, after=after, timeout=DEADLINE)
        assert "Watching" in watching.text
        assert await bot_api.wait_for_callback_answer(timeout=DEADLINE)
        await running.settled(await chain.actions.set_price("WETH", 1300))
        assert alerts_to(bot_api, ALICE) == ["CRITICAL"]

    async def test_alert_buttons_work(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Under an alert, Position shows the liquidation price, Check now reads again, Mute 1h mutes."""
        account = await standard_borrower(chain)
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account}")
        await running.settled(await chain.actions.set_price("WETH", 1300))
        (alert,) = [m for m in bot_api.messages_to(ALICE) if is_alert(m)]
        data = {text: d for row in alert.buttons for text, d in row}
        for button, expected in (("Position", "liquidation if WETH falls to"), ("Check now", "from liquidation"),
                                 ("Mute 1h", "Muted")):  # fmt: skip
            after = len(bot_api.messages)
            bot_api.press_button(ALICE, alert.message_id, data[button])
            reply = await bot_api.wait_for_message(ALICE, after=after, timeout=DEADLINE)
            assert expected in reply.text, button
        await bot_api.wait_until(lambda: len(bot_api.callback_answers) == 3, "three answers", DEADLINE)


class TestRepay:
    @pytest.mark.parametrize("protocol", list(REPAY_CASES))
    async def test_repaying_what_the_bot_says_reaches_the_target(
        self, protocol: str, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """`/repay vault 1.8` says `repay AMOUNT USDC`; the account repays exactly that and /check reads 1.8 (0.5%)."""
        case, account = REPAY_CASES[protocol], chain.accounts[4]
        await case.open_position(chain, account)
        await start_bot(protocols=all_protocols(chain))
        await say(bot_api, ALICE, f"/add {account} vault")
        reply = (await say(bot_api, ALICE, "/repay vault 1.8")).text
        match = re.search(r"repay ([0-9.,]+) USDC", reply)
        assert match, reply
        assert re.search(r"or add [0-9.]+ WETH of collateral", reply), reply
        await case.repay(chain, account, Decimal(match.group(1).replace(",", "")))
        checked = (await say(bot_api, ALICE, "/check vault")).text
        (health,) = [Decimal(h) for h in re.findall(r": health ([0-9.]+)", checked)]
        assert abs(health - Decimal("1.8")) <= Decimal("1.8") * Decimal("0.005"), checked

    async def test_default_target_is_the_warn_threshold_plus_a_tenth(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Without TARGET, /repay aims at the position's warn threshold x 1.1 (here the chat's own 1.6 -> 1.76)."""
        account = chain.accounts[0]
        await chain.actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1500})
        await start_bot()
        await say(bot_api, ALICE, f"/add {account}")
        await say(bot_api, ALICE, "/threshold all 1.6 1.3")
        assert "target 1.760" in (await say(bot_api, ALICE, "/repay")).text


class TestAlertDetail:
    async def test_an_alert_of_several_collaterals_names_a_liquidation_price_for_each(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """WETH and WBTC posted: the CRITICAL alert gives each asset's liquidation price, the other unchanged."""
        account = chain.accounts[3]
        await chain.actions.open_position(account, supply={"WETH": 1, "WBTC": Decimal("0.01")}, borrow={"USDC": 1500})
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account}")
        await running.settled(await chain.actions.set_price("WETH", 1500))
        alerts = [m for m in bot_api.messages_to(ALICE) if is_alert(m)]
        assert [a.text.split()[1] for a in alerts][-1] == "CRITICAL"
        for alert in alerts:
            lines = [line for line in alert.text.splitlines() if line.startswith("Liquidation price")]
            assert sorted(line.split()[2] for line in lines) == ["WBTC", "WETH"], alert.text
            assert all("others unchanged" in line or " none: " in line for line in lines), alert.text
        assert any("Liquidation price WETH" in line and "others unchanged" in line for line in alerts[-1].text.splitlines())
