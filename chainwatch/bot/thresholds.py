"""Thresholds and mutes: /threshold, /mute, /unmute, and the "Mute 1h" button under alerts."""

from __future__ import annotations

import time

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from chainwatch.alerts.buttons import Action
from chainwatch.bot import parse
from chainwatch.bot.callbacks import Callback
from chainwatch.bot.common import ADMINS_ONLY, refuse_unless_admin, Subject, may_change, subject_and_rest, words_of
from chainwatch.bot.context import BotContext, EngineBusy
from chainwatch.bot.texts import format_duration, usage, who
from chainwatch.chat_settings import ANY, Mute, ThresholdRule


OPERATOR_OWNED = "{address} is watched by the operator's configuration; its thresholds and mutes are set there."
NEVER_MUTED = "LIQUIDATABLE alerts still come through."


def _scope_name(subject: Subject, protocol: str, market: str) -> str:
    scope = "every address" if subject.is_all else who(subject.subscription.address, subject.subscription.label)  # type: ignore[union-attr]
    return scope + (f" on {protocol}" if protocol else "") + (f" market {market}" if market else "")


def _protocol(ctx: BotContext, text: str) -> str:
    for name in ctx.protocols:
        if name.casefold() == text.casefold():
            return name
    raise parse.BadArguments(f"unknown protocol {parse.quoted(text)} (configured: {', '.join(ctx.protocols)})")


async def threshold(message: Message, command: CommandObject, bot: Bot, ctx: BotContext) -> None:
    chat = message.chat.id
    if await refuse_unless_admin(bot, ctx, message):
        return
    try:
        subject, rest = await subject_and_rest(ctx, chat, words_of(command.args), allow_all=True)
        reset = bool(rest) and rest[-1].lower() == "reset"
        if reset:
            scope, warn, critical = rest[:-1], 0.0, 0.0
        else:
            if len(rest) < 2:
                raise parse.BadArguments("give WARN and CRITICAL (or reset)")
            scope, (warn, critical) = rest[:-2], parse.thresholds(rest[-2], rest[-1])
        if len(scope) > 2:
            raise parse.BadArguments(f"unexpected {parse.quoted(' '.join(scope[2:]))}")
        protocol = _protocol(ctx, scope[0]) if scope else ANY
        market = parse.market(scope[1]) if len(scope) > 1 else ANY
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('threshold')}")
        return
    if subject.subscription is not None and subject.subscription.operator:
        await ctx.reply(chat, OPERATOR_OWNED.format(address=subject.subscription.address))
        return
    address = ANY if subject.subscription is None else subject.subscription.address
    name = _scope_name(subject, protocol, market)
    if reset:
        removed = await ctx.store.chats.reset_rule(chat, address, protocol, market)
        text = f"Thresholds for {name} reset." if removed else f"{name} had no thresholds of its own at that level."
    else:
        await ctx.store.chats.set_rule(ThresholdRule(chat_id=chat, address=address, protocol=protocol, market=market,
                                                     warn=warn, critical=critical))  # fmt: skip
        text = f"Thresholds for {name}: warn below {warn:g}, critical below {critical:g}."
    # Read again at once: a position already past the new line is told now, not at the next price move.
    await _reload(ctx, [subject.subscription.address] if subject.subscription else [
        s.address for s in (await ctx.directory()).subscriptions_of(chat)])  # fmt: skip
    await ctx.reply(chat, text)


async def mute(message: Message, command: CommandObject, bot: Bot, ctx: BotContext) -> None:
    chat = message.chat.id
    if await refuse_unless_admin(bot, ctx, message):
        return
    try:
        subject, rest = await subject_and_rest(ctx, chat, words_of(command.args), allow_all=True)
        if len(rest) > 1:
            raise parse.BadArguments(f"unexpected {parse.quoted(' '.join(rest[1:]))}")
        seconds = parse.duration(rest[0]) if rest else None
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('mute')}")
        return
    await _mute(ctx, chat, subject, seconds)


async def _mute(ctx: BotContext, chat: int, subject: Subject, seconds: int | None) -> None:
    if subject.subscription is not None and subject.subscription.operator:
        await ctx.reply(chat, OPERATOR_OWNED.format(address=subject.subscription.address))
        return
    address = ANY if subject.subscription is None else subject.subscription.address
    until = None if seconds is None else time.time() + seconds
    await ctx.store.chats.mute(Mute(chat_id=chat, address=address, until=until))
    await _reload(ctx)
    span = "until /unmute" if seconds is None else f"for {format_duration(seconds)}"
    await ctx.reply(chat, f"Muted {_scope_name(subject, '', '')} {span}: no WARN, CRITICAL or RECOVERED. {NEVER_MUTED}")


async def unmute(message: Message, command: CommandObject, bot: Bot, ctx: BotContext) -> None:
    chat = message.chat.id
    if await refuse_unless_admin(bot, ctx, message):
        return
    try:
        subject, rest = await subject_and_rest(ctx, chat, words_of(command.args), allow_all=True)
        if rest:
            raise parse.BadArguments(f"unexpected {parse.quoted(' '.join(rest))}")
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('unmute')}")
        return
    address = ANY if subject.subscription is None else subject.subscription.address
    lifted = await ctx.store.chats.unmute(chat, address)
    await _reload(ctx)
    name = _scope_name(subject, "", "")
    # Nothing is replayed: the level went on being tracked, and only changes from now on are told.
    await ctx.reply(chat, f"Unmuted {name}." if lifted else f"{name} was not muted.")


async def mute_pressed(query: CallbackQuery, bot: Bot, ctx: BotContext, pressed_address: str, pressed_argument: str) -> None:
    message = query.message
    if message is None:
        await query.answer("This message is too old.")
        return
    chat = message.chat.id
    if not await may_change(bot, message.chat, query.from_user):
        await query.answer(ADMINS_ONLY, show_alert=True)
        return
    try:
        subject, _ = await subject_and_rest(ctx, chat, [pressed_address], allow_all=False)
        seconds = int(pressed_argument)
    except (parse.BadArguments, ValueError):
        await query.answer("That address is no longer watched here.")
        return
    await query.answer("Muted for 1h" if seconds == 3600 else "Muted")
    await _mute(ctx, chat, subject, seconds)


async def _reload(ctx: BotContext, accounts: list[str] | None = None) -> None:
    try:
        await ctx.watches_changed(accounts or ())
    except EngineBusy:
        pass  # committed; the engine picks the new settings up with its next command


def router() -> Router:
    """A new Router with this module's handlers (a Router can belong to one Dispatcher only)."""
    built = Router(name="thresholds")
    built.message.register(threshold, Command("threshold"))
    built.message.register(mute, Command("mute"))
    built.message.register(unmute, Command("unmute"))
    built.callback_query.register(mute_pressed, Callback(Action.MUTE))
    return built
