"""Role processes for the cluster tests: real subprocesses (`python -m chainwatch.roles.<role>`), their JSON logs in
files, and the queue's rows read straight from PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg

from chainwatch.devnet.actions import Position
from tests.fork.conftest import Chain

DEADLINE = 30.0


@dataclass
class RoleProcess:
    role: str
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    def events(self) -> list[dict[str, object]]:
        events = []
        for line in self.log_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a traceback line
        return events

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


@dataclass
class Cluster:
    directory: Path
    processes: list[RoleProcess] = field(default_factory=list)

    async def start(self, role: str, name: str, config: Path, *extra: str) -> RoleProcess:
        log_path = self.directory / f"{name}.log"
        out = log_path.open("w")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"chainwatch.roles.{role}", str(config), "--name", name, *extra,
            stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        out.close()
        started = RoleProcess(role=role, name=name, process=process, log_path=log_path)
        self.processes.append(started)
        return started

    async def stop_all(self) -> None:
        for started in self.processes:
            if started.process.returncode is None:
                started.process.send_signal(signal.SIGTERM)
        for started in self.processes:
            try:
                async with asyncio.timeout(10):
                    await started.process.wait()
            except TimeoutError:
                started.kill()
                await started.process.wait()


@asynccontextmanager
async def cluster(directory: Path) -> AsyncIterator[Cluster]:
    running = Cluster(directory)
    try:
        yield running
    finally:
        await running.stop_all()


async def until(condition: Callable[[], object], what: str, *, deadline: float = DEADLINE,
                alive: list[RoleProcess] | None = None) -> None:  # fmt: skip
    """Waits for `condition()` (sync or async) to be true, polling; fails naming `what` and the processes' tails."""
    try:
        async with asyncio.timeout(deadline):
            while True:
                value = condition()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                for started in alive or ():
                    assert started.process.returncode is None, f"{started.name} exited: {_tail(started)}"
                await asyncio.sleep(0.1)  # polling the condition, not a delay
    except TimeoutError:
        tails = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in alive or ())
        raise AssertionError(f"timed out waiting for {what}\n{tails}") from None


def _tail(started: RoleProcess) -> str:
    return "\n".join(started.log_path.read_text().splitlines()[-15:])


def booked(ingest: RoleProcess, positions: int) -> bool:
    """The ingest knows every position's exposure from the workers' results (a price move now marks them)."""
    return any(e.get("event") == "ingest.results_booked" and int(e["known"]) >= positions  # type: ignore[call-overload]
               for e in ingest.events())  # fmt: skip


async def borrowers(chain: Chain, count: int, label: str) -> list[str]:
    """`count` WETH borrowers, each a little riskier than the one before (health 1.70 down to ~1.4)."""
    accounts = [str(a) for a in await chain.actions.fund_accounts(count, label=label)]
    await chain.actions.open_positions([
        Position(account=a, supply={"WETH": Decimal(1)}, borrow={"USDC": Decimal(1000 + 10 * i)})
        for i, a in enumerate(accounts)
    ])  # fmt: skip
    return accounts


async def rows(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    db = await asyncpg.connect(url)
    try:
        return await db.fetch(query, *args)
    finally:
        await db.close()


async def queue_drained(url: str) -> bool:
    """Some work was written and all of it is done."""
    (row,) = await rows(url, "SELECT COUNT(*), COUNT(*) FILTER (WHERE state <> 'done') FROM work_chunks")
    return row[0] > 0 and row[1] == 0


async def alerts_in_outbox(url: str, block: int = 0) -> list[str]:
    """Every alert ever queued at or after `block` (superseded ones too: no sender runs here), oldest first."""
    query = "SELECT text FROM outbox WHERE kind <> 'REPLY' AND block >= $1 ORDER BY id"
    return [r[0] for r in await rows(url, query, block)]
