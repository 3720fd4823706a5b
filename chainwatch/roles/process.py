"""One `chainwatch run --role ROLE [--role ROLE ...]` process: the store opened once, each role run with its own
RoleContext until SIGINT/SIGTERM, and the metrics endpoint saying which roles are active here."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from contextlib import AsyncExitStack

import structlog

from chainwatch import metrics
from chainwatch.config import Config
from chainwatch.postgres_url import StorageUnavailable
from chainwatch.roles import RoleContext, RoleError, Runner
from chainwatch.schema import SchemaTooNew
from chainwatch.storage import open_store

log = structlog.get_logger(__name__)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_roles(config: Config, runners: dict[str, Runner], name: str) -> None:
    """Runs every role of `runners` concurrently until a signal; raises RoleError (one line) when one cannot run."""
    assert config.storage.url is not None  # checked by the CLI: roles share PostgreSQL
    stop = asyncio.Event()
    active = {role: False for role in runners}
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(open_store(config))
        except (StorageUnavailable, SchemaTooNew) as error:
            raise RoleError(f"storage: {error}") from None
        for role in runners:
            metrics.ROLE_ACTIVE.labels(role).set(0)
        if config.metrics is not None:
            from chainwatch.health import OutboxStats, serving

            async def outbox() -> dict[str, OutboxStats]:
                stats = await store.outbox_stats(time.time())
                return {kind: OutboxStats(count=n, oldest_age_seconds=age) for kind, (n, age) in stats.items()}

            await stack.enter_async_context(serving(config.metrics, outbox, roles=lambda: active, name=name))
        stack.enter_context(_signals(stop))

        def reporter(role: str):  # type: ignore[no-untyped-def]
            def set_active(is_active: bool) -> None:
                active[role] = is_active
                metrics.ROLE_ACTIVE.labels(role).set(1 if is_active else 0)

            return set_active

        log.info("roles.started", roles=list(runners), name=name)
        try:
            async with asyncio.TaskGroup() as group:
                for role, run in runners.items():
                    context = RoleContext(config=config, store=store, stop=stop, name=name,
                                          database_url=config.storage.url.reveal(), set_active=reporter(role))  # fmt: skip
                    group.create_task(_until_stopped(run(context), stop))
        except* RoleError as failures:
            raise RoleError(str(failures.exceptions[0])) from None
        log.info("roles.stopped", roles=list(runners), name=name)


async def _until_stopped(running: object, stop: asyncio.Event) -> None:
    try:
        await running  # type: ignore[misc]
    except BaseException:
        stop.set()  # one role failing stops the process's other roles too: a supervisor restarts it whole
        raise


class _signals:
    """SIGINT/SIGTERM set `stop`; a second one exits at once."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._count = 0

    def _on_signal(self) -> None:
        self._count += 1
        if self._count > 1:
            raise SystemExit(130)
        log.info("roles.stopping")
        self._stop.set()

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal)

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
