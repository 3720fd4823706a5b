"""`chainwatch run --role ...` as separate processes for tests: their JSON log lines read as they come, so a test
can wait on an event (a role active, the metrics address bound) and SIGKILL one at the worst moment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

CHAINWATCH = [sys.executable, "-m", "chainwatch.cli"]
DEADLINE = 20.0


class RoleProcess:
    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._seen = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := (await self.process.stderr.readline()).decode():
            async with self._seen:
                self.lines.append(line)
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
                self._seen.notify_all()
        async with self._seen:
            self._seen.notify_all()

    def logged(self, event: str, **facts: object) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == event
                     and all(e.get(k) == v for k, v in facts.items())), None)  # fmt: skip

    async def wait_logged(self, event: str, deadline: float = DEADLINE, **facts: object) -> dict[str, Any]:
        async with asyncio.timeout(deadline), self._seen:
            await self._seen.wait_for(lambda: self.logged(event, **facts) is not None or self._reader.done())
        found = self.logged(event, **facts)
        assert found is not None, f"{self.name}: no {event} {facts} in:\n{''.join(self.lines)[-3000:]}"
        return found

    def active_count(self, role: str) -> int:
        return sum(1 for e in self.events if e.get("event") == "role.active" and e.get("role") == role)

    async def metrics_address(self) -> str:
        return str((await self.wait_logged("metrics.serving"))["address"])

    def kill(self, signum: signal.Signals = signal.SIGKILL) -> None:
        os.kill(self.process.pid, signum)

    async def ended(self) -> int:
        async with asyncio.timeout(DEADLINE):
            await self._reader
            return await self.process.wait()


StartRole = Callable[..., "asyncio.Future[RoleProcess]"]


@asynccontextmanager
async def role_processes() -> AsyncIterator[Callable[..., Any]]:
    """`start(config, name, *roles)` starts a role process (metrics on a free port); all are killed at the end."""
    started: list[RoleProcess] = []

    async def start(config: Path, name: str, *roles: str) -> RoleProcess:
        arguments = [a for role in roles for a in ("--role", role)]
        process = await asyncio.create_subprocess_exec(
            *CHAINWATCH, "run", "--config", str(config), *arguments, "--name", name, "--metrics-listen", "127.0.0.1:0",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        running = RoleProcess(name, process)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            if running.process.returncode is None:
                running.kill()
            await running.ended()
