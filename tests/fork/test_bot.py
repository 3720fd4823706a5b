"""The Telegram bot end to end: people in their own chats, through the local Bot API server, against the running
service on Anvil (real Aave v3 and Morpho Blue), with a real SQLite file."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from chainwatch.devnet.morpho import MorphoActions
from tests.fork.conftest import DEADLINE, TOKEN, Chain, Running, StartWatcher, aave_protocol
from tests.fork.test_repay import CASES as REPAY_CASES
from tests.fork.test_spine import health_at
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


@pytest.fixture
def start_bot(start_watcher: StartWatcher, chain: Chain) -> Callable[..., Awaitable[Running]]:
    """chainwatch with the bot on, Aave and Morpho configured, and no operator watch: chats bring their own."""

    async def start(**overrides: object) -> Running:
        overrides.setdefault("protocols", aave_protocol(chain) + morpho_protocol(chain))
        overrides.setdefault("bot", "check_cooldown_seconds = 0")
        return await start_watcher(watched=[], **overrides)

    return start


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


VALID = "0x52908400098527886E0F7030069857D2E4169EE7"
BAD_INPUTS = [
    ("/add", "Which address?"),
    ("/add 0x123", "is not an address"),
    ("/add 0x52908400098527886e0F7030069857D2E4169EE7", "bad EIP-55 checksum"),
    (f"/add {VALID} " + "x" * 4000, "at most 32 characters"),
    (f"/add {VALID} a\u200bb", "zero-width"),
    (f"/add {VALID} \u202eevil", "direction-changing"),
    ("/add \x00\x01\x1b[31m", "is not an address"),
    ("/remove", "Which address?"),
    (f"/remove {VALID}", "is not watched in this chat"),
    ("/threshold", "say which address"),
    ("/threshold all 1.2 1.5", "1.0 < CRITICAL < WARN <= 10"),
    ("/threshold all nan 1.1", "finite"),
    ("/threshold all 1e400 1.1", "finite"),
    ("/threshold nosuch 1.5 1.2", "no address labelled"),
    ("/threshold all nosuchproto 1.5 1.2", "unknown protocol"),
    ("/threshold all neverland 0xzz 1.5 1.2", "is not a market"),
    ("/mute all 1w", "is not a duration"),
    ("/mute", "say which address"),
    ("/unmute", "say which address"),
    ("/repay 0.5", "TARGET must be above 1.0"),
    ("/check nolabel", "no address labelled"),
    ("/position <script>alert(1)</script>", "no address labelled"),
    ("/frobnicate", "Unknown command"),
    ("hello *_[bold](x)", "Send an address"),
    ("\U0001f680" * 1000, "Send an address"),
]


class TestBadInput:
    async def test_each_bad_input_gets_one_reply_saying_what_is_wrong(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """Every malformed or hostile command gets exactly one plain-text reply naming the problem; the service
        stays up, nothing is stored, and no reply carries the token."""
        running = await start_bot(bot="commands_per_minute = 1000\ncheck_cooldown_seconds = 0")
        for text, says in BAD_INPUTS:
            after = len(bot_api.messages)
            bot_api.send_text(ALICE, text)
            bot_api.send_text(ALICE, "/status")  # a sentinel: the chat's replies come in order
            await bot_api.wait_for_message(ALICE, lambda m: "Latest block processed" in m.text, after=after, timeout=DEADLINE)
            replies = bot_api.messages[after:-1]
            assert len(replies) == 1, (text, [m.text for m in replies])
            assert says in replies[0].text, (text, replies[0].text)
            assert replies[0].parse_mode is None and TOKEN not in replies[0].text
        assert not running.task.done()
        assert "no address yet" in (await say(bot_api, ALICE, "/list")).text

    async def test_markup_in_a_label_is_kept_as_typed_and_does_not_break_list(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """A label of HTML, Markdown and emoji is stored and shown exactly as typed, in plain text."""
        await start_bot()
        label = "<b>x</b> *_[y](z) \U0001f40b"
        assert "Watching" in (await say(bot_api, ALICE, f"/add {VALID} {label}")).text
        listed = await say(bot_api, ALICE, "/list")
        assert f"{VALID} ({label})" in listed.text and listed.parse_mode is None

    async def test_the_address_limit_is_enforced(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """With max_addresses_per_chat = 2 the third /add is refused and the first two stay."""
        await start_bot(bot="max_addresses_per_chat = 2\ncheck_cooldown_seconds = 0")
        for account in chain.accounts[:2]:
            await say(bot_api, ALICE, f"/add {account}")
        assert "the most allowed" in (await say(bot_api, ALICE, f"/add {chain.accounts[2]}")).text
        listed = (await say(bot_api, ALICE, "/list")).text
        assert "Watched here (2)" in listed and chain.accounts[2] not in listed


class TestManyUsers:
    async def test_a_flooding_chat_is_told_to_slow_down_and_others_are_still_answered(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """40 commands in a burst from one chat: it is answered 20 times plus one "slow down"; Bob still is."""
        running = await start_bot(bot="commands_per_minute = 20")
        for _ in range(40):
            bot_api.send_text(ALICE, "/status")
        assert "Latest block processed" in (await say(bot_api, BOB, "/status")).text
        await bot_api.wait_until(lambda: len(bot_api.messages_to(ALICE)) >= 21, "Alice's 21 replies", DEADLINE)
        assert running.watcher.engine is not None and running.watcher.engine.processed is not None
        await running.settled(running.watcher.engine.processed.number)  # the outbox is empty: nothing more comes
        replies = [m.text for m in bot_api.messages_to(ALICE)]
        assert len(replies) == 21 and sum("Slow down" in r for r in replies) == 1

    async def test_a_burst_of_replies_never_holds_back_a_liquidatable_alert(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """With 40 replies to 40 chats waiting (5 messages/s), a LIQUIDATABLE alert queued after them goes first."""
        account = await standard_borrower(chain)
        running = await start_bot(messages_per_second=5)
        await say(bot_api, ALICE, f"/add {account}")
        ids = [bot_api.send_text(5000 + i, "/help") for i in range(40)]
        await bot_api.wait_for_update_confirmed(ids[-1], timeout=DEADLINE)  # all handled: 40 replies queued
        await running.settled(await chain.actions.set_price("WETH", 1100))
        order = [m for m in bot_api.messages if m.chat_id == ALICE and is_alert(m) or m.chat_id >= 5000]
        alert_at = next(i for i, m in enumerate(order) if is_alert(m))
        assert order[alert_at].text.split()[1] == "LIQUIDATABLE"
        assert len(order) - alert_at - 1 >= 20, "most replies queued before the alert should go after it"

    async def test_a_chat_that_blocked_the_bot_is_paused_then_resumed_when_it_writes(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """A 403 pauses the chat (no more sends to it, its watch kept); its next message resumes its alerts."""
        account = await standard_borrower(chain)
        running = await start_bot()
        await say(bot_api, ALICE, f"/add {account} vault")
        bot_api.block_chat(ALICE)
        await running.settled(await chain.actions.set_price("WETH", 1700))  # WARN: refused with 403
        sends_to_alice = lambda: [r for r in bot_api.requests if r.method == "sendMessage"  # noqa: E731
                                  and str(r.params.get("chat_id")) == str(ALICE)]  # fmt: skip
        refused = len(sends_to_alice())
        await running.settled(await chain.actions.set_price("WETH", 1300))  # CRITICAL: not even tried
        assert len(sends_to_alice()) == refused
        bot_api._blocked.discard(ALICE)  # the user unblocks the bot and writes to it
        assert "vault" in (await say(bot_api, ALICE, "/list")).text
        await running.settled(await chain.actions.set_price("WETH", 1100))
        assert alerts_to(bot_api, ALICE) == ["LIQUIDATABLE"]


class TestService:
    async def test_menu_status_and_stop(
        self, chain: Chain, start_bot: Callable[..., Awaitable[Running]], bot_api: BotApiServer
    ) -> None:
        """The menu is registered at start; /status tells the block and counts; /stop forgets after its button."""
        account = await standard_borrower(chain)
        await start_bot()
        await bot_api.wait_until(lambda: len(bot_api.commands) == 13, "the command menu", DEADLINE)
        assert [c for c, _ in bot_api.commands][:3] == ["start", "help", "add"]
        await say(bot_api, ALICE, f"/add {account}")
        status = (await say(bot_api, ALICE, "/status")).text
        assert re.search(r"Latest block processed: \d+, [0-9.]+ s ago", status), status
        # Its Aave position; on Morpho it has none (no market found for it), so nothing to count there.
        assert "Positions watched: 1 in this chat, 1 in all" in status and "Alerts waiting to be sent: 0" in status
        confirm = await say(bot_api, ALICE, "/stop")
        yes = next(d for row in confirm.buttons for t, d in row if t.startswith("Yes"))
        after = len(bot_api.messages)
        bot_api.press_button(ALICE, confirm.message_id, yes)
        assert "forgotten" in (await bot_api.wait_for_message(ALICE, after=after, timeout=DEADLINE)).text
        assert "no address yet" in (await say(bot_api, ALICE, "/list")).text


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
