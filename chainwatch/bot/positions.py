"""Reading positions now: /check, /position, /repay, and the "Position" and "Check now" buttons under alerts."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from chainwatch.alerts.buttons import Action, position_tag
from chainwatch.bot import parse
from chainwatch.bot.callbacks import Callback
from chainwatch.bot.common import health_report, readings_of, words_of
from chainwatch.bot.context import BotContext, EngineBusy
from chainwatch.bot.detail_texts import position_text, repay_text
from chainwatch.bot.texts import usage
from chainwatch.bot.watching import ENGINE_BUSY
from chainwatch.index import Target
from chainwatch.model import Reading



async def _addresses(ctx: BotContext, chat: int, words: list[str]) -> list[tuple[str, str | None]]:
    """The (address, label) pairs a command is about: the one named, or every address of this chat."""
    if not words:
        return [(s.address, s.label) for s in (await ctx.directory()).subscriptions_of(chat)]
    text = " ".join(words)
    if parse.looks_like_address(text):
        address = parse.address(text)
        mine = {s.address: s.label for s in (await ctx.directory()).subscriptions_of(chat)}
        return [(address, mine.get(address))]  # any address may be read; only watched ones have a label
    subscription = await ctx.resolve(chat, text)
    return [(subscription.address, subscription.label)]


async def _cooled_down(ctx: BotContext, chat: int) -> bool:
    if (wait := ctx.limits.check_wait(chat)) > 0:
        await ctx.reply(chat, f"One read every {ctx.config.bot.check_cooldown_seconds:g} s: try again in {max(1, round(wait))} s.")
        return False
    return True


async def check(message: Message, command: CommandObject, ctx: BotContext) -> None:
    chat = message.chat.id
    try:
        addresses = await _addresses(ctx, chat, words_of(command.args))
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('check')}")
        return
    await _check(ctx, chat, addresses)


async def _check(ctx: BotContext, chat: int, addresses: list[tuple[str, str | None]]) -> None:
    if not addresses:
        await ctx.reply(chat, "You watch no address yet. " + usage("add"))
        return
    if not await _cooled_down(ctx, chat):
        return
    try:
        outcomes = await ctx.read_now([a for a, _ in addresses])
    except EngineBusy:
        await ctx.reply(chat, ENGINE_BUSY)
        return
    directory = await ctx.directory()
    reports = [
        health_report(address, label, [(t, o) for t, o in outcomes if t.account == address], directory, chat)
        for address, label in addresses
    ]
    await ctx.reply(chat, "\n\n".join(reports))


async def position(message: Message, command: CommandObject, ctx: BotContext) -> None:
    chat = message.chat.id
    try:
        addresses = await _addresses(ctx, chat, words_of(command.args))
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('position')}")
        return
    await _position(ctx, chat, addresses)


async def _detailed_read(
    ctx: BotContext, chat: int, addresses: list[tuple[str, str | None]]
) -> tuple[list[Reading], list[Target]] | None:  # fmt: skip
    """The per-asset readings of `addresses` now; None once the chat has been told why there are none."""
    if not addresses:
        await ctx.reply(chat, "You watch no address yet. " + usage("add"))
        return None
    try:
        return readings_of(await ctx.read_now([a for a, _ in addresses], detailed=True))
    except EngineBusy:
        await ctx.reply(chat, ENGINE_BUSY)
        return None


async def _position(ctx: BotContext, chat: int, addresses: list[tuple[str, str | None]], tag: str | None = None) -> None:
    if (read := await _detailed_read(ctx, chat, addresses)) is None:
        return
    readings, failed = read
    if tag is not None and any(position_tag(r.key) == tag for r in readings):
        readings = [r for r in readings if position_tag(r.key) == tag]
    await ctx.reply(chat, position_text(addresses, readings, failed))


async def repay(message: Message, command: CommandObject, ctx: BotContext) -> None:
    chat = message.chat.id
    words = words_of(command.args)
    try:
        target = None
        if words and _is_number(words[-1]):
            target, words = parse.target(words[-1]), words[:-1]
        addresses = await _addresses(ctx, chat, words)
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('repay')}")
        return
    if (read := await _detailed_read(ctx, chat, addresses)) is None:
        return
    readings, failed = read
    directory = await ctx.directory()
    mine = {s.address: s for s in directory.subscriptions_of(chat)}

    def target_of(reading):  # type: ignore[no-untyped-def]
        if target is not None:
            return target
        subscription = mine.get(reading.key.account)
        warn = directory.thresholds(subscription, reading.key).warn if subscription else ctx.config.alerts.warn
        return warn * 1.1  # a little above the warn line, so the next small move does not warn again

    await ctx.reply(chat, repay_text(addresses, readings, failed, target_of))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return not parse.looks_like_address(text)


async def position_pressed(query: CallbackQuery, ctx: BotContext, pressed_address: str, pressed_argument: str) -> None:
    if query.message is None:
        await query.answer("This message is too old.")
        return
    await query.answer()
    chat = query.message.chat.id
    mine = {s.address: s.label for s in (await ctx.directory()).subscriptions_of(chat)}
    await _position(ctx, chat, [(pressed_address, mine.get(pressed_address))], tag=pressed_argument or None)


async def check_pressed(query: CallbackQuery, ctx: BotContext, pressed_address: str) -> None:
    if query.message is None:
        await query.answer("This message is too old.")
        return
    await query.answer()
    chat = query.message.chat.id
    mine = {s.address: s.label for s in (await ctx.directory()).subscriptions_of(chat)}
    await _check(ctx, chat, [(pressed_address, mine.get(pressed_address))])


def router() -> Router:
    """A new Router with this module's handlers (a Router can belong to one Dispatcher only)."""
    built = Router(name="positions")
    built.message.register(check, Command("check"))
    built.message.register(position, Command("position"))
    built.message.register(repay, Command("repay"))
    built.callback_query.register(position_pressed, Callback(Action.POSITION))
    built.callback_query.register(check_pressed, Callback(Action.CHECK))
    return built
