"""Small pieces every router uses: who may change a group's settings, naming a watch in the arguments, and the
health lines of a read."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, Message, User

from chainwatch.alerts.directory import Directory, Subscription
from chainwatch.alerts.message import short_market
from chainwatch.bot import parse
from chainwatch.bot.context import BotContext
from chainwatch.bot.texts import check_lines, who
from chainwatch.index import Target
from chainwatch.model import Reading
from chainwatch.protocols.base import AccountReading
from chainwatch.recompute import Outcome

GROUPS = ("group", "supergroup")
ADMINS_ONLY = "Only this group's administrators can change what it watches; anyone may /check, /list, /position and /status."


def words_of(args: str | None) -> list[str]:
    return (args or "").split()


async def may_change(bot: Bot, chat: Chat, user: User | None) -> bool:
    """In a group only its administrators change watches, thresholds and mutes; in a private chat its owner."""
    if chat.type not in GROUPS:
        return True
    if user is None:
        return False
    try:
        member = await bot.get_chat_member(chat.id, user.id)
    except TelegramAPIError:
        return False  # cannot tell: refuse rather than let anyone change a group's alerts
    return member.status in ("creator", "administrator")


async def refuse_unless_admin(bot: Bot, ctx: BotContext, message: Message) -> bool:
    """True (and the chat told why) when the sender may not change this chat's settings."""
    if await may_change(bot, message.chat, message.from_user):
        return False
    await ctx.reply(message.chat.id, ADMINS_ONLY)
    return True


class Subject:
    """What a command's first words name: one of the chat's watches, or `all` of them."""

    def __init__(self, subscription: Subscription | None) -> None:
        self.subscription = subscription

    @property
    def is_all(self) -> bool:
        return self.subscription is None


async def subject_and_rest(ctx: BotContext, chat_id: int, words: list[str], *, allow_all: bool) -> tuple[Subject, list[str]]:
    """Splits the words into the subject (an address, a label of possibly several words, or `all`) and the rest,
    trying the longest run of words that names a label first."""
    if not words:
        raise parse.BadArguments("say which address (or label" + (", or all" if allow_all else "") + ")")
    if allow_all and words[0].lower() == "all":
        return Subject(None), words[1:]
    if parse.looks_like_address(words[0]):
        return Subject(await ctx.resolve(chat_id, words[0])), words[1:]
    for end in range(len(words), 0, -1):
        try:
            return Subject(await ctx.resolve(chat_id, " ".join(words[:end]))), words[end:]
        except parse.BadArguments:
            continue
    raise parse.BadArguments(f"no address labelled {parse.quoted(words[0])} in this chat (see /list)")


def readings_of(outcomes: Sequence[Outcome]) -> tuple[list[Reading], list[Target]]:
    """The readings of a read, and the targets that could not be read."""
    readings, failed = [], []
    for target, outcome in outcomes:
        if isinstance(outcome, AccountReading):
            readings.extend(outcome.readings)
        else:
            failed.append(target)
    return readings, failed


def health_report(
    address: str, label: str | None, outcomes: Sequence[Outcome], directory: Directory, chat_id: int
) -> str:  # fmt: skip
    """The /check text of one address: each position's health, worst first, and what could not be read."""
    readings, failed = readings_of(outcomes)
    subscription = next((s for s in directory.subscriptions_of(chat_id) if s.address == address), None)

    def thresholds_of(reading: Reading):  # type: ignore[no-untyped-def]
        return directory.thresholds(subscription, reading.key) if subscription else directory.thresholds(
            Subscription(chat_id=chat_id, address=address), reading.key)  # fmt: skip

    lines = [who(address, label)]
    found = check_lines(readings, thresholds_of)
    partly = {t.protocol for t, o in outcomes if isinstance(o, AccountReading) and o.unreadable}
    empty = sorted({t.protocol for t, _ in outcomes} - set(failed_names(failed)) - partly)
    lines += found or (["  no position on " + ", ".join(empty)] if empty else [])
    for target, outcome in outcomes:
        if isinstance(outcome, AccountReading):
            for part in outcome.unreadable:  # a market that cannot be read or priced is said so, never dropped
                where = f"{target.protocol} market {short_market(part.market)}" if part.market else target.protocol
                lines.append(f"  {where}: cannot be read or priced now ({part.reason[:120]})")
    if failed:
        lines.append("  could not be read now: " + ", ".join(sorted(failed_names(failed))) + " (try again shortly)")
    blocks = {r.block for r in readings}
    if blocks:
        lines.append(f"  at block {max(blocks)}")
    return "\n".join(lines)


def failed_names(failed: Sequence[Target]) -> list[str]:
    return sorted({t.protocol for t in failed})
