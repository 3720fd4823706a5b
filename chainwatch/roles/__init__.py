"""chainwatch's roles, each runnable as its own process (`chainwatch run --role ROLE`) when storage is PostgreSQL.

- ingest (one active per chain): blocks and events -> work chunks, with the cursor, fenced by its lock.
- worker (any number): claims work chunks, reads, evaluates, writes levels + outbox + completion in one transaction.
- sender (one active per bot token): drains the outbox under the bot-wide budget.
- bot (one active per bot token): the getUpdates poller; watch changes reach the ingest through NOTIFY.

`chainwatch run` without `--role` runs everything in one process, as always (`app.Watcher`).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chainwatch.config import Config
from chainwatch.storage_port import StorePort

ROLES = ("ingest", "worker", "sender", "bot")

# Where each role's `run(context)` lives; imported only when the role is asked for.
RUNNERS = {
    "ingest": "chainwatch.roles.ingest:run",
    "worker": "chainwatch.roles.worker:run",
    "sender": "chainwatch.roles.sender:run",
    "bot": "chainwatch.roles.bot:run",
}

# NOTIFY channels shared by the roles (payloads are the chain id, so one database can serve several chains).
WORK_CHANNEL = "chainwatch_work"  # ingest -> workers: new chunks
OUTBOX_CHANNEL = "chainwatch_outbox"  # workers, bot -> sender: new messages
WATCHES_CHANNEL = "chainwatch_watches"  # bot -> ingest: watches or thresholds changed


@dataclass
class RoleContext:
    """What a role process gets: its config, the shared store, the stop signal, and how to report its state.

    `name` identifies the process in logs and metrics (host:pid unless set). `database_url` is the PostgreSQL URL
    (secret: never log it; `postgres_url.redacted` for display). `set_active` tells health/metrics whether this
    process is the active holder of its duty or a standby.
    """

    config: Config
    store: StorePort
    stop: asyncio.Event
    name: str
    database_url: str
    set_active: Callable[[bool], None] = field(default=lambda active: None)


Runner = Callable[[RoleContext], Awaitable[None]]


class RoleError(Exception):
    """A role cannot run as configured; the text (one line) says what to fix."""


def token_duty(role: str, config: Config) -> str:
    """The duty one process per bot token holds ("sender:<hash>"): Telegram's limits and getUpdates are per token.
    The token itself never appears (a hash prefix); without a token, stdout is per chain."""
    token = config.telegram_token()
    if token is None:
        return f"{role}:stdout:{config.chain.chain_id}"
    return f"{role}:{hashlib.sha256(token.reveal().encode()).hexdigest()[:16]}"


def runner(role: str) -> Runner:
    module, _, function = RUNNERS[role].partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]
