"""Run a local Anvil node (the pinned binary from node_modules) for tests, the demo and benchmarks."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Final

import aiohttp
import msgspec

from chainwatch.devnet.solc import ToolingMissing, node_modules_dir

CHAIN_ID: Final = 31337
_ANVIL_IN_NODE_MODULES: Final = Path("@foundry-rs/anvil-linux-amd64/bin/anvil")
_READY_DEADLINE_S: Final = 15.0
_STOP_DEADLINE_S: Final = 5.0
_POLL_INTERVAL_S: Final = 0.02
# A port picked as free can be taken before Anvil binds it; a few fresh picks make that race harmless.
_START_ATTEMPTS: Final = 3


class AnvilFailed(Exception):
    """Anvil exited or did not answer `eth_chainId` in time; carries what it wrote to stderr."""


class AnvilNode(msgspec.Struct, frozen=True, kw_only=True):
    port: int
    http_url: str
    ws_url: str
    process: asyncio.subprocess.Process
    cache_path: Path  # where this node persists past states; removed when it stops


def anvil_binary() -> Path:
    """The Anvil executable: `$CHAINWATCH_ANVIL`, else the pinned one in node_modules."""
    override = os.environ.get("CHAINWATCH_ANVIL")
    path = Path(override) if override else node_modules_dir() / _ANVIL_IN_NODE_MODULES
    if not os.access(path, os.X_OK):
        raise ToolingMissing(f"no executable anvil at {path}")
    return path


@asynccontextmanager
async def running_anvil(
    port: int | None = None, *, block_time: float | None = None, extra_args: Sequence[str] = (),
    ready_deadline: float = _READY_DEADLINE_S,
) -> AsyncIterator[AnvilNode]:
    """A fresh Anvil on 127.0.0.1 (chain id 31337, automine unless `block_time`), stopped on exit.

    `extra_args` go to Anvil as they are (the scale benchmark's `--gas-limit`, `--load-state`); a large state to
    load needs a `ready_deadline` longer than the default.

    Anvil writes the states of past blocks to disk once its in-memory history is full, by default under
    ~/.foundry/anvil/tmp, and never removes them: GBs per benchmark run, once a full disk. Each node gets its own
    cache directory here, removed with the node, so no run leaves anything behind while block-pinned reads and
    `anvil_reorg` keep the whole history.
    """
    binary = anvil_binary()
    with tempfile.TemporaryFile() as stderr, tempfile.TemporaryDirectory(prefix="chainwatch-anvil-") as cache:
        node = await _start(binary, port, block_time, stderr, Path(cache), extra_args, ready_deadline)
        try:
            yield node
        finally:
            await _stop(node.process)


async def _start(
    binary: Path, port: int | None, block_time: float | None, stderr: IO[bytes], cache: Path,
    extra_args: Sequence[str] = (), ready_deadline: float = _READY_DEADLINE_S,
) -> AnvilNode:  # fmt: skip
    attempts = 1 if port is not None else _START_ATTEMPTS
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else _free_port()
        args = ["--host", "127.0.0.1", "--port", str(chosen), "--chain-id", str(CHAIN_ID), "--silent",
                "--cache-path", str(cache)]  # fmt: skip
        if block_time is not None:
            args += ["--block-time", f"{block_time:g}"]
        args += extra_args
        process = await asyncio.create_subprocess_exec(
            binary, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=stderr
        )
        node = AnvilNode(port=chosen, http_url=f"http://127.0.0.1:{chosen}", ws_url=f"ws://127.0.0.1:{chosen}",
                         process=process, cache_path=cache)  # fmt: skip
        try:
            ready = await _answers_chain_id(node, ready_deadline)
        except BaseException:
            await _stop(process)
            raise
        if ready:
            return node
        await _stop(process)
        if attempt == attempts:
            stderr.seek(0)
            detail = stderr.read().decode(errors="replace").strip()
            raise AnvilFailed(f"anvil on port {chosen} did not start (exit {process.returncode}): {detail}")
    raise AssertionError("unreachable: the last attempt raises")


async def _answers_chain_id(node: AnvilNode, within: float = _READY_DEADLINE_S) -> bool:
    """Poll until Anvil answers `eth_chainId`; False once it has exited (e.g. port taken)."""
    deadline = time.monotonic() + within
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if node.process.returncode is not None:
                return False
            try:
                async with session.post(node.http_url, json=request) as response:
                    body = await response.json()
                if int(body["result"], 16) == CHAIN_ID:
                    return True
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass  # not listening yet
            await asyncio.sleep(_POLL_INTERVAL_S)
    raise AnvilFailed(f"anvil on port {node.port} did not answer eth_chainId within {within:g} s")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _STOP_DEADLINE_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
