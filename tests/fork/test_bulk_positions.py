"""BulkPositions opens real Aave positions at the planned health, and the scale benchmark's cached chain loads back
the same positions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from benchmarks.scale_chain import PRICE_DROP, WARN, WETH_START, crossing_on_drop, plan_positions, scale_chain
from chainwatch.devnet.actions import DevnetActions
from chainwatch.devnet.bulk import compile_bulk
from chainwatch.devnet.common import POOL, aave_artifact
from chainwatch.devnet.transactions import Rpc

COUNT = 40


def seed_with_a_crossing() -> int:
    """The first seed whose plan has a position the price drop takes below warn, so that case is exercised."""
    return next(seed for seed in range(1, 1000) if crossing_on_drop(plan_positions(COUNT, seed)))


async def account_data(http_url: str, pool: str, accounts: list[str]) -> list[tuple[int, int, float]]:
    """(collateral in base currency, debt in base currency, health) of each account, from Pool.getUserAccountData."""
    artifact = aave_artifact(POOL)
    rpc = Rpc(http_url)
    try:
        results = await rpc.batch([("eth_call", [{"to": pool, "data": artifact.calldata("getUserAccountData", a)},
                                                 "latest"]) for a in accounts])  # fmt: skip
    finally:
        await rpc.aclose()
    words = [[int(r[2 + 64 * k : 2 + 64 * (k + 1)], 16) for k in range(6)] for r in results]
    return [(w[0], w[1], w[5] / 1e18) for w in words]


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


async def test_bulk_positions_open_at_the_planned_health_and_survive_a_dump_and_load(cache_home: Path) -> None:
    """Each clone holds collateral and debt at the planned health; loading the dumped state gives the same ones."""
    seed = seed_with_a_crossing()
    async with scale_chain(COUNT, seed) as built:
        assert built.built
        pool = built.meta.devnet.aave_v3.pool
        opened = await account_data(built.node.http_url, pool, built.accounts)
        assert len(set(built.accounts)) == COUNT
        for (collateral, debt, health), planned in zip(opened, built.plan, strict=True):
            assert collateral > 0 and debt > 0
            assert health == pytest.approx(float(planned.health), rel=1e-4)
        opener = (await compile_bulk())["BulkPositions"]
        rpc = Rpc(built.node.http_url)
        try:
            on_chain = await rpc.call("eth_call", {"to": built.meta.bulk.opener,
                                                   "data": opener.calldata("holderAt", 7)}, "latest")  # fmt: skip
        finally:
            await rpc.aclose()
        assert on_chain[-40:] == built.accounts[7][2:].lower()
    assert list(cache_home.rglob("state.json")), "the built chain was not cached"

    async with scale_chain(COUNT, seed) as loaded:
        assert not loaded.built
        assert loaded.accounts == built.accounts
        again = await account_data(loaded.node.http_url, pool, loaded.accounts)
        for (collateral, debt, health), (collateral0, debt0, health0) in zip(again, opened, strict=True):
            assert collateral == collateral0
            assert debt >= debt0  # interest may have accrued since
            assert health == pytest.approx(health0, rel=1e-4)
        async with DevnetActions(loaded.node.http_url, loaded.meta.devnet) as actions:
            await actions.set_price("WETH", Decimal(WETH_START) * (1 - PRICE_DROP))
        dropped = await account_data(loaded.node.http_url, pool, loaded.accounts)
        below = [i for i, (_, _, health) in enumerate(dropped) if health < WARN]
        assert below == crossing_on_drop(loaded.plan)
