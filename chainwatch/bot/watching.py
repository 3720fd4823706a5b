"""Watching: /add, /remove, /list, an address sent alone (a check with a Watch button), and /stop."""

from __future__ import annotations

import time

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from chainwatch.alerts.buttons import Action, forget_buttons, watch_button
from chainwatch.bot import parse
from chainwatch.bot.callbacks import Callback
from chainwatch.bot.common import ADMINS_ONLY, refuse_unless_admin, health_report, may_change, readings_of, subject_and_rest, words_of
from chainwatch.bot.context import BotContext, EngineBusy
from chainwatch.bot.texts import list_text, usage, who
from chainwatch.chat_settings import AddOutcome


_ADDRESS_ALONE = r"^\s*0[xX][0-9a-fA-F]{40}\s*$"
ENGINE_BUSY = "The chain cannot be read right now; try again in a minute."


async def add(message: Message, command: CommandObject, bot: Bot, ctx: BotContext) -> None:
    chat = message.chat.id
    words = words_of(command.args)
    if not words:
        await ctx.reply(chat, "Which address? " + usage("add"))
        return
    if await refuse_unless_admin(bot, ctx, message):
        return
    try:
        address, label = parse.address(words[0]), parse.label(words[1:])
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('add')}")
        return
    await add_watch(ctx, chat, message.chat.type, address, label)


async def add_watch(ctx: BotContext, chat: int, chat_type: str, address: str, label: str | None) -> None:
    directory = await ctx.directory()
    if any(s.operator and s.address == address for s in directory.subscriptions_of(chat)):
        await ctx.reply(chat, f"{address} is already watched here by the operator's configuration.")
        return
    outcome = await ctx.store.chats.add_watch(chat, chat_type, address, label, limit=ctx.config.bot.max_addresses_per_chat)
    if outcome is AddOutcome.LIMIT_REACHED:
        await ctx.reply(chat, f"This chat already watches {ctx.config.bot.max_addresses_per_chat} addresses, the most "
                              "allowed. /remove one first.")  # fmt: skip
        return
    if outcome is AddOutcome.LABEL_TAKEN:
        await ctx.reply(chat, f"Another address here is already labelled {parse.quoted(label or '')}; pick another label.")
        return
    try:
        outcomes = await ctx.watches_changed([address])
    except EngineBusy:
        await ctx.reply(chat, f"Watching {who(address, label)} from the next block. {ENGINE_BUSY}")
        return
    readings, _ = readings_of(outcomes)
    head = {
        AddOutcome.ADDED: "Watching from the next block:",
        AddOutcome.RELABELLED: f"Already watched; label now {parse.quoted(label or '')}:",
        AddOutcome.UNCHANGED: "Already watched:",
    }[outcome]
    directory = await ctx.directory()
    label = next((s.label for s in directory.subscriptions_of(chat) if s.address == address), label)
    report = health_report(address, label, outcomes, directory, chat)
    if not any(r.debt > 0 or r.collateral > 0 for r in readings):
        protocols = ", ".join(ctx.protocols)
        report += f"\nNo position yet on {protocols}: it is watched anyway, and you will hear when one gets close to liquidation."
    await ctx.reply(chat, f"{head}\n{report}")


async def remove(message: Message, command: CommandObject, bot: Bot, ctx: BotContext) -> None:
    chat = message.chat.id
    words = words_of(command.args)
    if not words:
        await ctx.reply(chat, "Which address? " + usage("remove"))
        return
    if await refuse_unless_admin(bot, ctx, message):
        return
    try:
        subject, rest = await subject_and_rest(ctx, chat, words, allow_all=False)
        if rest:
            raise parse.BadArguments(f"unexpected {parse.quoted(' '.join(rest))} after the address")
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.\n{usage('remove')}")
        return
    subscription = subject.subscription
    assert subscription is not None
    if subscription.operator:
        await ctx.reply(chat, f"{subscription.address} is watched by the operator's configuration and cannot be removed here.")
        return
    await ctx.store.chats.remove_watch(chat, subscription.address)
    try:
        await ctx.watches_changed()
    except EngineBusy:
        pass  # committed: the engine takes it up with the next change or restart, and alerts are already filtered
    await ctx.reply(chat, f"Stopped watching {who(subscription.address, subscription.label)}.")


async def list_watches(message: Message, ctx: BotContext) -> None:
    chat = message.chat.id
    directory = await ctx.directory()
    text = list_text(directory.subscriptions_of(chat), directory.rules_of(chat), directory.mutes_of(chat, time.time()),
                     ctx.config.alerts)  # fmt: skip
    await ctx.reply(chat, text)


async def address_alone(message: Message, ctx: BotContext) -> None:
    chat = message.chat.id
    try:
        address = parse.address((message.text or "").strip())
    except parse.BadArguments as error:
        await ctx.reply(chat, f"{error}.")
        return
    if (wait := ctx.limits.check_wait(chat)) > 0:
        await ctx.reply(chat, f"One read every {ctx.config.bot.check_cooldown_seconds:g} s: try again in {wait:.0f} s.")
        return
    try:
        outcomes = await ctx.read_now([address])
    except EngineBusy:
        await ctx.reply(chat, ENGINE_BUSY)
        return
    directory = await ctx.directory()
    buttons = () if directory.watched_by(chat, address) else watch_button(address)
    await ctx.reply(chat, health_report(address, None, outcomes, directory, chat), buttons)


async def watch_pressed(query: CallbackQuery, bot: Bot, ctx: BotContext, pressed_address: str) -> None:
    message = query.message
    if message is None:
        await query.answer("This message is too old.")
        return
    if not await may_change(bot, message.chat, query.from_user):
        await query.answer(ADMINS_ONLY, show_alert=True)
        return
    await query.answer("Watching it")
    await add_watch(ctx, message.chat.id, message.chat.type, pressed_address, None)


async def stop(message: Message, bot: Bot, ctx: BotContext) -> None:
    chat = message.chat.id
    if await refuse_unless_admin(bot, ctx, message):
        return
    await ctx.reply(chat, "Forget every address, threshold and mute of this chat? This cannot be undone.", forget_buttons())


async def stop_pressed(query: CallbackQuery, bot: Bot, ctx: BotContext, pressed_argument: str) -> None:
    message = query.message
    if message is None:
        await query.answer("This message is too old.")
        return
    if not await may_change(bot, message.chat, query.from_user):
        await query.answer(ADMINS_ONLY, show_alert=True)
        return
    if pressed_argument != "yes":
        await query.answer("Kept")
        await ctx.reply(message.chat.id, "Nothing was forgotten.")
        return
    await ctx.store.chats.forget_chat(message.chat.id)
    await query.answer("Forgotten")
    try:
        await ctx.watches_changed()
    except EngineBusy:
        pass
    await ctx.reply(message.chat.id, "Everything of this chat is forgotten. /add an address to start again.")


def router() -> Router:
    """A new Router with this module's handlers (a Router can belong to one Dispatcher only)."""
    built = Router(name="watching")
    built.message.register(add, Command("add"))
    built.message.register(remove, Command("remove"))
    built.message.register(list_watches, Command("list"))
    built.message.register(address_alone, F.text.regexp(_ADDRESS_ALONE))
    built.callback_query.register(watch_pressed, Callback(Action.WATCH))
    built.message.register(stop, Command("stop"))
    built.callback_query.register(stop_pressed, Callback(Action.FORGET))
    return built
