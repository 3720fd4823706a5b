"""The bot itself: /start, /help, /status, and the answers to anything it does not understand (wired last)."""

from __future__ import annotations

import time

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message

from chainwatch.bot.context import BotContext
from chainwatch.bot.texts import help_text



async def start(message: Message, ctx: BotContext) -> None:
    await ctx.reply(message.chat.id, help_text(ctx.protocols))


async def status(message: Message, ctx: BotContext) -> None:
    facts = ctx.status()
    chat = message.chat.id
    processed, processed_at = facts.get("processed_block"), facts.get("processed_at")
    age = "" if not isinstance(processed_at, float) else f", {max(0.0, time.time() - processed_at):.1f} s ago"
    watched_here = facts["positions_of"](chat) if callable(facts.get("positions_of")) else 0  # type: ignore[operator]
    lines = [
        f"Latest block processed: {processed if processed is not None else 'none yet'}{age}",
        f"Positions watched: {watched_here} in this chat, {facts.get('positions', 0)} in all",
        f"Alerts waiting to be sent: {await ctx.store.pending_count(alerts_only=True)}",
    ]
    await ctx.reply(chat, "\n".join(lines))


async def unknown_command(message: Message, ctx: BotContext) -> None:
    command = (message.text or "").split()[0]
    if "@" in command and message.chat.type != "private":
        return  # a command for another bot in the group
    await ctx.reply(message.chat.id, "Unknown command. Send /help for the list.")


async def anything_else(message: Message, ctx: BotContext) -> None:
    """In a private chat every message gets an answer; in groups the bot speaks only when spoken to."""
    await ctx.reply(message.chat.id, "Send an address to check it, or /help for what I can do.")


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer("This button is no longer valid.")


def router() -> Router:
    """A new Router with this module's handlers (a Router can belong to one Dispatcher only)."""
    built = Router(name="settings")
    built.message.register(start, CommandStart())
    built.message.register(start, Command("help"))
    built.message.register(status, Command("status"))
    return built


def fallback() -> Router:
    """A new Router with this module's handlers (a Router can belong to one Dispatcher only)."""
    built = Router(name="fallback")
    built.message.register(unknown_command, F.text.startswith("/"))
    built.message.register(anything_else, F.chat.type == "private")
    built.callback_query.register(unknown_button)
    return built
