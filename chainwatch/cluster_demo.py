"""`scripts/cluster`: the demo's chain and positions, watched by a local cluster of role processes on PostgreSQL.

An embedded PostgreSQL server, the pinned Anvil with the devnet, the built-in local Bot API server, and as separate
`chainwatch run --role` processes: two ingests, two workers, two senders and one bot. Each process's own log
lines that tell the story (who became active, which worker did which chunk, which sender sent what) are printed
with the process's name. After the first price step the active ingest and the active sender are killed with
SIGKILL: their standbys take over, and the alerts of the next steps still arrive, once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg

from chainwatch.demo import DEMO_TOKEN, POSITIONS, WETH_PATH, _config_text, prepare_chain, say
from chainwatch.devnet.anvil import running_anvil
from chainwatch.devnet.botapi import running_bot_api
from chainwatch.devnet.postgres import embedded_postgres_server

PROCESSES = [
    ("ingest-a", "ingest"), ("ingest-b", "ingest"), ("worker-1", "worker"), ("worker-2", "worker"),
    ("sender-a", "sender"), ("sender-b", "sender"), ("bot", "bot"),
]  # fmt: skip
# The log events that say what a process did; everything else stays in its log file.
TOLD = {"role.active", "leadership.acquired", "ingest.started", "role.standby", "ingest.work_written", "worker.chunk_done", "alert.sent", "leadership.lost",
        "ingest.fenced"}  # fmt: skip
DEADLINE = 30.0


class Member:
    """One role process: its name, role, and what it said (its active duty, once it has one)."""

    def __init__(self, name: str, role: str, process: asyncio.subprocess.Process) -> None:
        self.name, self.role, self.process = name, role, process
        self.active = False


async def _follow(member: Member, log_file: Path) -> None:
    assert member.process.stdout is not None
    with log_file.open("wb") as out:
        async for line in member.process.stdout:
            out.write(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("event")
            if name in ("role.active", "leadership.acquired"):
                member.active = True
            if name in TOLD:
                details = {k: v for k, v in event.items() if k in ("block", "duty", "chunk", "targets", "chat_id", "kind")}
                say(f"[{member.name}] {name} {' '.join(f'{k}={v}' for k, v in details.items())}".rstrip())


async def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster demo: {what} did not happen within {DEADLINE:.0f} s")
        await asyncio.sleep(0.1)  # polling a condition with a deadline


async def run_cluster_demo() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chainwatch-cluster-") as workdir, embedded_postgres_server() as url:
        say(f"PostgreSQL is up (embedded, in {workdir})")
        async with running_anvil() as node, running_bot_api(DEMO_TOKEN) as server, AsyncExitStack() as stack:
            devnet, aave = await prepare_chain(node.http_url, stack)
            config = Path(workdir) / "cluster.toml"
            text = _config_text(node.ws_url, devnet, Path(workdir) / "unused.db", server.base_url)
            config.write_text(text.replace(f'path = "{Path(workdir) / "unused.db"}"', f'url = "{url}"'))
            members: list[Member] = []
            following = []
            try:
                for name, role in PROCESSES:
                    # A sender says each alert it sent only at debug (its info line is one per batch).
                    level = ["--log-level", "debug"] if role == "sender" else []
                    process = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "chainwatch.cli", *level, "run", "--config", str(config), "--role", role,
                        "--name", name, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )  # fmt: skip
                    member = Member(name, role, process)
                    members.append(member)
                    following.append(asyncio.create_task(_follow(member, Path(workdir) / f"{name}.log")))
                db = await asyncpg.connect(url)
                stack.push_async_callback(db.close)

                async def settled(block: int = 0) -> bool:
                    cursor = await db.fetchval("SELECT max(block_number) FROM cursor")
                    if cursor is None or cursor < block:
                        return False  # the ingest has not turned the block into work yet
                    open_chunks = await db.fetchval("SELECT count(*) FROM work_chunks WHERE state <> 'done'")
                    unsent = await db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")
                    read = await db.fetchval("SELECT count(*) FROM target_state")
                    return bool(open_chunks == 0 and unsent == 0 and read >= len(POSITIONS))

                async def active(role: str) -> bool:
                    return any(m.active and m.role == role and m.process.returncode is None for m in members)

                for role in ("ingest", "sender"):
                    await _until(lambda role=role: active(role), f"an active {role}")
                await _until(settled, "the first read of every position")
                say(f"cluster up: {len(members)} processes; every position read by the workers")
                shown = 0
                for step, price in enumerate(WETH_PATH):
                    block = await aave.set_price("WETH", price)
                    say(f"WETH -> ${price:,} (block {block})")
                    await _until(lambda block=block: settled(block), f"block {block}'s alerts")
                    for message in server.messages[shown:]:
                        say(f"    telegram <- {message.text.splitlines()[0]}")
                    shown = len(server.messages)
                    if step == 0:
                        for role in ("ingest", "sender"):
                            victim = next(m for m in members if m.active and m.role == role)
                            say(f"SIGKILL {victim.name} (the active {role})")
                            victim.active = False
                            victim.process.send_signal(signal.SIGKILL)
                            await victim.process.wait()
                            await _until(lambda role=role: active(role), f"a standby {role} taking over")
            finally:
                for member in members:
                    if member.process.returncode is None:
                        member.process.send_signal(signal.SIGTERM)
                for member in members:
                    try:
                        async with asyncio.timeout(15):
                            await member.process.wait()
                    except TimeoutError:
                        member.process.kill()
                for task in following:
                    task.cancel()
    say(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run_cluster_demo()))
