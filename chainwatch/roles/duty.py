"""The shape every one-active role shares: wait as a standby, then do the duty while the lock holds, then (lock
lost) stop at once and go back to waiting; until the process is told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from chainwatch.leadership import HeldByAnother, Leadership, LeadershipLost, leadership, run_while_held
from chainwatch.roles import RoleContext, RoleError

log = structlog.get_logger(__name__)

# A SIGKILLed holder's connection drops at once and the server frees its lock: a standby polling this often is
# active well within the 5 s the issue asks for.
POLL_SECONDS = 0.5
CHECK_SECONDS = 1.0


async def hold_and_run(
    context: RoleContext, role: str, duty: str, work: Callable[[Leadership], Awaitable[None]]
) -> None:
    """Runs `work(held)` whenever this process holds `duty`; `work` must return once `context.stop` is set.

    The duty is per bot token, and a token's holder does one chain's work: a process of another chain finding the
    token's lock held by it would wait for ever while its own chain's alerts pile up unsent, so it stops, saying so."""
    chain = context.config.chain.chain_id
    tag = f"chainwatch {role} chain={chain}"
    while not context.stop.is_set():
        log.info("role.standby", role=role, duty=duty, name=context.name)
        try:
            await _hold_once(context, role, duty, work, tag)
        except HeldByAnother as other:
            found = str(other).rpartition("chain=")[2] or "another chain"
            raise RoleError(f"{role}: the bot token is already used by the {role} of chain {found}, and one "
                            f"{role} per token serves one chain; give chain {chain} its own bot token") from None


async def _hold_once(context: RoleContext, role: str, duty: str, work: Callable[[Leadership], Awaitable[None]],
                     tag: str) -> None:  # fmt: skip
    async with leadership(context.database_url, duty, context.stop, poll_seconds=POLL_SECONDS,
                          check_seconds=CHECK_SECONDS, holder_tag=tag) as held:  # fmt: skip
        if held is None:
            return
        context.set_active(True)
        log.info("role.active", role=role, duty=duty, name=context.name)
        try:
            await run_while_held(held, asyncio.ensure_future(work(held)))
        except LeadershipLost:
            log.warning("role.lost", role=role, duty=duty, name=context.name)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The store failed under the duty (a partition, a restart of PostgreSQL): let go of the lock so a
            # standby that can reach it takes over, and wait as a standby ourselves.
            log.warning("role.store_failed", role=role, duty=duty, name=context.name, reason=type(error).__name__)
        finally:
            context.set_active(False)
