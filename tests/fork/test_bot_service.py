"""The bot end to end, as a service: bad and hostile input, many chats and their budget, the menu, /status, /stop."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable


from tests.fork.bot_support import (
    ALICE, BOB, alerts_to, is_alert, say, standard_borrower,
)
from tests.fork.conftest import DEADLINE, TOKEN, Chain, Running
from tests.support.botapi import BotApiServer


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
