"""The bot end to end, watching: /add, /remove, thresholds and mutes per chat, restarts, groups, isolation."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal


from chainwatch.devnet.morpho import MorphoActions
from tests.fork.bot_support import (
    ADMIN, ALICE, BOB, GROUP, MEMBER, alerts_to, is_alert, say, shown_health,
    standard_borrower,
)
from tests.fork.conftest import DEADLINE, Chain, Running
from tests.support.botapi import BotApiServer


class TestWatching:
    async def test_add_then_a_price_drop_alerts_that_chat_only(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """/add of an Aave borrower replies with its health; a WETH drop then alerts that chat and no other."""
        account = await standard_borrower(chain)
        running = await start_bot()
        reply = await say(bot_api, ALICE, f"/add {account.lower()} my vault")
        assert f"Watching from the next block:\n{account} (my vault)" in reply.text
        assert shown_health(reply.text, "neverland") == Decimal("1.700")
        await say(bot_api, BOB, "/list")
        block = await chain.actions.set_price("WETH", 1300)
        await running.settled(block)
        assert alerts_to(bot_api, ALICE) == ["CRITICAL"] and alerts_to(bot_api, BOB) == []
        (alert,) = [m for m in bot_api.messages_to(ALICE) if is_alert(m)]
        assert "(my vault)" in alert.text and alert.parse_mode is None
        assert [text for row in alert.buttons for text, _ in row] == ["Position", "Mute 1h", "Check now"]

    async def test_add_of_a_morpho_borrower_found_from_its_events(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """A Morpho market not in the config is found from the account's own events at /add, and alerts."""
        morpho = chain.devnet.morpho_blue
        assert morpho is not None
        account = chain.accounts[1]
        async with MorphoActions(chain.node.http_url, morpho) as actions:
            await actions.open_position(account, "WETH/USDC", collateral=1, borrow=1000)
        running = await start_bot()
        reply = await say(bot_api, ALICE, f"/add {account}")
        assert "morpho market 0x" in reply.text
        block = await chain.actions.set_price("WETH", 1300)
        await running.settled(block)
        assert alerts_to(bot_api, ALICE) == ["CRITICAL"]

    async def test_an_address_with_no_position_is_watched_and_the_reply_says_so(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """An empty address is watched anyway; its first borrow into danger alerts."""
        account = chain.accounts[2]
        running = await start_bot()
        reply = await say(bot_api, ALICE, f"/add {account}")
        assert "No position yet" in reply.text and "watched anyway" in reply.text
        await chain.actions.open_position(account, supply={"WETH": 1}, borrow={"USDC": 1000})
        block = await chain.actions.borrow(account, "USDC", 200)
        await running.settled(block)
        assert alerts_to(bot_api, ALICE) == ["WARN"]

    async def test_remove_stops_the_alerts(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """After /remove by label, a crash of the price sends that chat nothing."""
        account = await standard_borrower(chain)
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account} vault")
        assert "Stopped watching" in (await say(bot_api, ALICE, "/remove vault")).text
        block = await chain.actions.set_price("WETH", 1100)
        await running.settled(block)
        assert alerts_to(bot_api, ALICE) == []
        assert "no address yet" in (await say(bot_api, ALICE, "/list")).text

    async def test_two_chats_with_their_own_thresholds_get_their_own_alerts(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """One address, read once per pass: Alice (warn 1.8, critical 1.6) and Bob (defaults) hear different things."""
        account = await standard_borrower(chain)
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account}")
        await say(bot_api, BOB, f"/add {account}")
        assert "warn below 1.8, critical below 1.6" in (await say(bot_api, ALICE, "/threshold all 1.8 1.6")).text
        await bot_api.wait_until(lambda: alerts_to(bot_api, ALICE) == ["WARN"], "Alice warned at 1.70 < 1.8", DEADLINE)
        await running.settled(await chain.actions.set_price("WETH", 1800))  # health 1.53
        await running.settled(await chain.actions.set_price("WETH", 1700))  # health 1.445
        assert alerts_to(bot_api, ALICE) == ["WARN", "CRITICAL"]
        assert alerts_to(bot_api, BOB) == ["WARN"]

    async def test_mute_silences_warn_but_never_liquidatable(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Muted, the chat hears nothing of WARN or CRITICAL, but LIQUIDATABLE comes through."""
        account = await standard_borrower(chain)
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account} vault")
        assert "LIQUIDATABLE alerts still come through" in (await say(bot_api, ALICE, "/mute vault 2h")).text
        await running.settled(await chain.actions.set_price("WETH", 1700))  # WARN, muted
        await running.settled(await chain.actions.set_price("WETH", 1350))  # CRITICAL, muted
        assert alerts_to(bot_api, ALICE) == []
        await running.settled(await chain.actions.set_price("WETH", 1100))  # LIQUIDATABLE
        assert alerts_to(bot_api, ALICE) == ["LIQUIDATABLE"]
        listed = (await say(bot_api, ALICE, "/list")).text
        assert "muted for 1h 59m more" in listed or "muted for 2h 0m more" in listed

    async def test_restart_keeps_watches_thresholds_and_mutes(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """After a restart the chat's address, its threshold and its mute still apply, and nothing repeats."""
        account = await standard_borrower(chain)
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account} vault")
        await say(bot_api, ALICE, "/threshold vault 1.8 1.6")
        await bot_api.wait_until(lambda: alerts_to(bot_api, ALICE) == ["WARN"], "Alice warned at 1.70 < 1.8", DEADLINE)
        await say(bot_api, BOB, f"/add {account}")
        await say(bot_api, BOB, "/mute all")
        await running.shutdown()
        running = await start_bot()
        await running.settled(await chain.actions.set_price("WETH", 1800))  # 1.53: Alice CRITICAL (own), Bob muted
        await running.settled(await chain.actions.set_price("WETH", 1650))  # 1.40: Bob WARN, muted
        assert alerts_to(bot_api, ALICE) == ["WARN", "CRITICAL"] and alerts_to(bot_api, BOB) == []
        listed = (await say(bot_api, ALICE, "/list")).text
        assert "vault" in listed and "warn 1.8, critical 1.6" in listed
        assert "muted until /unmute" in (await say(bot_api, BOB, "/list")).text

    async def test_an_update_that_arrives_while_stopped_is_answered_after_restart(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Updates handled before a stop are confirmed; one sent while chainwatch is down is answered once it is up."""
        running = await start_bot()
        first = bot_api.send_text(ALICE, "/help")
        await bot_api.wait_for_message(ALICE, timeout=DEADLINE)
        await running.shutdown()
        assert bot_api.is_confirmed(first)
        late = bot_api.send_text(ALICE, "/status")
        assert not bot_api.is_confirmed(late)
        after = len(bot_api.messages)
        await start_bot()
        reply = await bot_api.wait_for_message(ALICE, after=after, timeout=DEADLINE)
        assert "Latest block processed" in reply.text


class TestGroups:
    async def test_only_administrators_change_a_groups_watches(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """A member's /add is refused and stores nothing; the admin's works; the member may still /list."""
        account = chain.accounts[0]
        bot_api.set_admins(GROUP, [ADMIN])
        await start_bot()
        refused = await say(bot_api, GROUP, f"/add {account}", user_id=MEMBER, chat_type="supergroup")
        assert "Only this group's administrators" in refused.text
        assert "no address yet" in (await say(bot_api, GROUP, "/list", user_id=MEMBER)).text
        assert "Watching" in (await say(bot_api, GROUP, f"/add {account}", user_id=ADMIN)).text
        assert account in (await say(bot_api, GROUP, "/list", user_id=MEMBER)).text


class TestIsolation:
    async def test_a_chat_cannot_see_or_change_another_chats_watches(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Alice's label means nothing in Bob's chat: he cannot remove, mute or set thresholds on it, nor list it."""
        account = chain.accounts[0]
        await start_bot()
        await say(bot_api, ALICE, f"/add {account} vault")
        for attempt in ("/remove vault", "/mute vault", "/threshold vault 1.8 1.5", f"/remove {account}"):
            reply = (await say(bot_api, BOB, attempt)).text
            assert "no address labelled" in reply or "is not watched in this chat" in reply, (attempt, reply)
        assert "no address yet" in (await say(bot_api, BOB, "/list")).text
        listed = (await say(bot_api, ALICE, "/list")).text
        assert f"{account} (vault)" in listed and "none of your own" in listed and "Muted" not in listed

    async def test_check_is_rate_limited_per_chat_and_says_when_to_try_again(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Within check_cooldown_seconds a second /check is refused with the wait; another chat is not held back."""
        account = await standard_borrower(chain)
        await start_bot(bot="check_cooldown_seconds = 600")
        assert "health 1.700" in (await say(bot_api, ALICE, f"/check {account}")).text
        assert re.search(r"try again in \d+ s", (await say(bot_api, ALICE, f"/check {account}")).text)
        assert "health 1.700" in (await say(bot_api, BOB, f"/check {account}")).text
