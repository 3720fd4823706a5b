"""No run fills the disk: the Anvil that tests, the demo and benchmarks start leaves no state files behind."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from chainwatch.devnet.anvil import running_anvil

DEFAULT_STATE_DIR = Path.home() / ".foundry" / "anvil" / "tmp"


def state_dirs() -> set[str]:
    return {p.name for p in DEFAULT_STATE_DIR.iterdir()} if DEFAULT_STATE_DIR.is_dir() else set()


async def test_a_node_writes_nothing_to_the_shared_state_directory_and_removes_its_own() -> None:
    """Mining blocks on a node adds nothing under ~/.foundry/anvil/tmp, and its own cache is gone after it stops."""
    before = state_dirs()
    async with running_anvil() as node:
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                async with session.post(node.http_url, json={"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}) as r:
                    assert "error" not in await r.json()
        own = node.cache_path
        assert own.is_dir()
    assert state_dirs() <= before
    assert not own.exists()
