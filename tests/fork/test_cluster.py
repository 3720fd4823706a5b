"""The ingest and worker roles as separate processes on one PostgreSQL and Anvil: the same alerts as one process,
exactly once, through a worker's and an ingest's SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

from decimal import Decimal

import msgspec

from chainwatch.devnet.actions import Position

from tests.fork.cluster_support import (
    alerts_in_outbox, booked, borrowers, cluster, queue_drained, rows, until,
)  # fmt: skip
from tests.fork.conftest import LOOPBACK_BUDGET, Chain, StartWatcher, write_config
from tests.integration.test_store_port import fresh_database
from tests.support.botapi import BotApiServer
from tests.support.pgforward import forwarding
from tests.support.rpcproxy import RpcProxy, running_proxy


async def _snapshot(chain: Chain) -> str:
    return (await chain.web3.provider.make_request("evm_snapshot", []))["result"]  # type: ignore[arg-type,index,no-any-return]


async def _revert(chain: Chain, snapshot: str) -> None:
    assert (await chain.web3.provider.make_request("evm_revert", [snapshot]))["result"] is True  # type: ignore[arg-type,index]


async def test_one_ingest_two_workers_queue_every_alert_once_as_one_process_does(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, start_watcher: StartWatcher, postgres_url: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    accounts = await borrowers(chain, 18, "cluster-parity")
    # Two collaterals: the alert's liquidation price is one line per asset, from a detailed read by the worker.
    several = [str(a) for a in await chain.actions.fund_accounts(2, label="cluster-parity-two")]
    await chain.actions.open_positions([Position(account=a, supply={"WETH": Decimal(1), "WBTC": Decimal("0.01")},
                                                 borrow={"USDC": Decimal(1400)}) for a in several])  # fmt: skip
    accounts += several
    before = await _snapshot(chain)
    alone = await fresh_database(postgres_url)
    single = await start_watcher(watched=accounts, storage_url=alone)
    await single.settled(await chain.actions.set_price("WETH", 1300))
    await single.shutdown()
    expected = [_shape(text) for text in await alerts_in_outbox(alone)]  # superseded ones too, as below
    assert len(expected) >= 20  # every position alerted by the drop, some also warned at the start
    lines_of = {account: {int(shape[3]) for shape in expected if account in shape[1]} for account in accounts}
    assert min(lines_of[several[0]]) > max(lines_of[accounts[0]])  # its alert has a line per asset
    await _revert(chain, before)

    url = await fresh_database(postgres_url)
    config = write_config(tmp_path / "cluster.toml", chain, proxy, bot_api, watched=accounts, storage_url=url,
                          chain_extra="calls_per_batch = 6")  # fmt: skip
    async with cluster(tmp_path) as running:
        ingest = await running.start("ingest", "ingest-a", config)
        workers = [await running.start("worker", f"worker-{i}", config) for i in (1, 2)]
        alive = [ingest, *workers]
        await until(lambda: booked(ingest, 20), "the first reads booked by the ingest", alive=alive)
        block = await chain.actions.set_price("WETH", 1300)
        await until(lambda: _cursor_at(url, block), "the ingest past the price block", alive=alive)
        await until(lambda: queue_drained(url), "every chunk done", alive=alive)
        queued = [_shape(text) for text in await alerts_in_outbox(url)]
        assert Counter(queued) == Counter(expected)
        work = await rows(url, "SELECT DISTINCT claimed_by FROM work_chunks WHERE block_number = $1", block)
        assert {r[0] for r in work} <= {"worker-1", "worker-2"} and len(await rows(
            url, "SELECT 1 FROM work_chunks WHERE block_number = $1", block)) == 4  # 20 positions, 6 a chunk


async def test_a_killed_workers_chunk_is_claimed_again_after_its_lease_and_alerts_once(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, postgres_url: str, tmp_path: Path
) -> None:
    accounts = await borrowers(chain, 12, "cluster-kill-worker")
    url = await fresh_database(postgres_url)
    config = write_config(tmp_path / "cluster.toml", chain, proxy, bot_api, watched=accounts, storage_url=url,
                          chain_extra="calls_per_batch = 4")  # fmt: skip
    async with running_proxy(chain.node.http_url, chain.node.ws_url) as doomed_rpc, cluster(tmp_path) as running:
        doomed_config = write_config(tmp_path / "doomed.toml", chain, proxy, bot_api, watched=accounts,
                                     storage_url=url, chain_extra="calls_per_batch = 4",
                                     http_urls=f'[{{ url = "{doomed_rpc.http_url}", requests_per_second = {LOOPBACK_BUDGET} }}]')  # fmt: skip
        ingest = await running.start("ingest", "ingest-a", config)
        doomed = await running.start("worker", "doomed", doomed_config, "--lease-seconds", "2")
        await until(lambda: booked(ingest, 12), "the first reads booked", alive=[ingest, doomed])
        await doomed_rpc.go_dead("hang")  # its next read never returns: it holds its claim until killed
        block = await chain.actions.set_price("WETH", 1300)

        async def held() -> list[object]:
            return await rows(url, "SELECT id FROM work_chunks WHERE block_number = $1 AND state = 'claimed' "
                                   "AND claimed_by = 'doomed'", block)  # fmt: skip

        await until(held, "the doomed worker holding a chunk of the price block", alive=[ingest, doomed])
        (chunk,) = await held()
        doomed.kill()
        await doomed.process.wait()
        await doomed_rpc.revive()
        survivor = await running.start("worker", "survivor", config)
        await until(lambda: queue_drained(url), "every chunk done", alive=[ingest, survivor])
        dropped = await alerts_in_outbox(url, block)
        assert sorted(_account_of(text, accounts) for text in dropped) == sorted(accounts)  # each once
        (again,) = await rows(url, "SELECT claimed_by, attempts FROM work_chunks WHERE id = $1", chunk[0])
        assert again[0] == "survivor" and again[1] == 2


async def test_the_standby_ingest_takes_over_from_the_cursor_and_the_missed_block_alerts(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, postgres_url: str, tmp_path: Path
) -> None:
    accounts = await borrowers(chain, 10, "cluster-kill-ingest")
    url = await fresh_database(postgres_url)
    config = write_config(tmp_path / "cluster.toml", chain, proxy, bot_api, watched=accounts, storage_url=url,
                          chain_extra="calls_per_batch = 4")  # fmt: skip
    async with cluster(tmp_path) as running:
        active = await running.start("ingest", "ingest-a", config)
        await until(lambda: _event(active, "ingest.started"), "ingest-a active", alive=[active])
        standby = await running.start("ingest", "ingest-b", config)
        worker = await running.start("worker", "worker-1", config)
        await until(lambda: booked(active, 10), "the first reads booked", alive=[active, standby, worker])
        await until(lambda: queue_drained(url), "the first chunks done", alive=[active, standby, worker])
        assert not _event(standby, "leadership.acquired")
        active.kill()
        killed_at = time.monotonic()
        await active.process.wait()
        (cursor,) = await rows(url, "SELECT block_number FROM cursor")
        await until(lambda: _event(standby, "leadership.acquired"), "the standby holding the lock", deadline=5.0)
        assert time.monotonic() - killed_at < 5.0
        block = await chain.actions.set_price("WETH", 1300)  # no ingest had turned this block into work
        await until(lambda: _cursor_at(url, block), "the standby past the price block", alive=[standby, worker])
        await until(lambda: queue_drained(url), "every chunk done", alive=[standby, worker])
        started = [e for e in standby.events() if e.get("event") == "ingest.started"]
        assert [e["resumed_after"] for e in started] == [cursor[0]]
        dropped = await alerts_in_outbox(url, block)
        assert sorted(_account_of(text, accounts) for text in dropped) == sorted(accounts)  # each once
        assert await _each_block_written_once(url)


async def test_a_price_move_before_a_new_clusters_first_reads_are_back_still_alerts(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, postgres_url: str, tmp_path: Path
) -> None:
    accounts = await borrowers(chain, 6, "cluster-cold-move")
    # An empty block first: the ingest's start block then holds none of these accounts' own events (which would
    # mark them again on their own and hide what this test is about).
    await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    url = await fresh_database(postgres_url)
    config = write_config(tmp_path / "cluster.toml", chain, proxy, bot_api, watched=accounts, storage_url=url,
                          chain_extra="calls_per_batch = 4")  # fmt: skip
    async with cluster(tmp_path) as running:
        ingest = await running.start("ingest", "ingest-a", config)
        await until(lambda: _event(ingest, "ingest.work_written"), "the start's work written", alive=[ingest])
        # No worker has read anything yet: the ingest cannot know who holds WETH when this block comes.
        block = await chain.actions.set_price("WETH", 1300)
        worker = await running.start("worker", "worker-1", config)
        await until(lambda: _cursor_at(url, block), "the ingest past the price block", alive=[ingest, worker])
        await until(lambda: queue_drained(url), "every chunk done", alive=[ingest, worker])
        dropped = await alerts_in_outbox(url, block)
        assert sorted(_account_of(text, accounts) for text in dropped) == sorted(accounts)  # each once
        assert _event(ingest, "ingest.first_reads_booked")


async def test_a_partitioned_ingest_stops_writing_work_before_the_standby_starts(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, postgres_url: str, tmp_path: Path
) -> None:
    """The active ingest's lock connection goes through a forwarder that is cut; the process keeps running (and
    keeps trying to write blocks' work, fenced by the lock it lost) while the standby takes over."""
    accounts = await borrowers(chain, 8, "cluster-partition")
    url = await fresh_database(postgres_url)
    config = write_config(tmp_path / "cluster.toml", chain, proxy, bot_api, watched=accounts, storage_url=url,
                          chain_extra="calls_per_batch = 4")  # fmt: skip
    async with forwarding(postgres_url) as cable, cluster(tmp_path) as running:
        cut_off = await running.start("ingest", "ingest-a", config, "--lock-url", cable.url(url))
        await until(lambda: _event(cut_off, "ingest.started"), "ingest-a active", alive=[cut_off])
        standby = await running.start("ingest", "ingest-b", config)
        worker = await running.start("worker", "worker-1", config)
        everyone = [cut_off, standby, worker]
        await until(lambda: booked(cut_off, 8), "the first reads booked", alive=everyone)

        async def mine() -> None:
            while True:  # a block every 0.2 s: both ingests always have a block to write
                await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
                await asyncio.sleep(0.2)

        miner = asyncio.create_task(mine())
        try:
            await until(lambda: _cursor_moved(url, 3), "blocks turned into work by ingest-a", alive=everyone)
            cable.cut()
            await until(lambda: _event(standby, "leadership.acquired"), "the standby holding the lock", deadline=5.0)
            await until(lambda: _event(cut_off, "ingest.fenced"), "ingest-a standing down", alive=everyone)
            block = await chain.actions.set_price("WETH", 1300)
            await until(lambda: _cursor_at(url, block), "the standby past the price block", alive=everyone)
            await until(lambda: queue_drained(url), "every chunk done", alive=everyone)
        finally:
            miner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await miner
        assert cut_off.process.returncode is None  # partitioned, never dead
        assert await _each_block_written_once(url)
        (order,) = await rows(url, "SELECT MAX(created_at) FILTER (WHERE written_by = 'ingest-a'), "
                                   "MIN(created_at) FILTER (WHERE written_by = 'ingest-b') FROM work_chunks")  # fmt: skip
        assert order[0] is not None and order[1] is not None and order[0] < order[1]
        dropped = await alerts_in_outbox(url, block)
        assert sorted(_account_of(text, accounts) for text in dropped) == sorted(accounts)


async def _cursor_moved(url: str, blocks: int) -> bool:
    """The cursor went `blocks` past the first block of work."""
    (row,) = await rows(url, "SELECT (SELECT block_number FROM cursor) - MIN(block_number) FROM work_chunks")
    return row[0] is not None and row[0] >= blocks


async def _each_block_written_once(url: str) -> bool:
    """No block has work from two ingests, and no target twice in one block's work."""
    chunks = await rows(url, "SELECT block_hash, written_by, targets FROM work_chunks")
    writers: dict[str, set[str]] = {}
    targets: dict[str, list[object]] = {}
    for block_hash, written_by, encoded in chunks:
        writers.setdefault(block_hash, set()).add(written_by)
        targets.setdefault(block_hash, []).extend(tuple(t.values()) for t in msgspec.json.decode(encoded))
    assert all(len(w) == 1 for w in writers.values()), writers
    assert all(len(t) == len(set(t)) for t in targets.values())
    return True


def _event(process: object, name: str) -> bool:
    return any(e.get("event") == name for e in process.events())  # type: ignore[attr-defined]


async def _cursor_at(url: str, block: int) -> bool:
    found = await rows(url, "SELECT block_number FROM cursor")
    return bool(found) and found[0][0] >= block


def _shape(text: str) -> tuple[str, ...]:
    """An alert's kind, account and block; its figures differ in the last digit between two runs of the chain,
    whose blocks have other timestamps (interest accrues by the second)."""
    lines = text.split("\n")
    return (lines[0], lines[1], lines[-1], str(len(lines)))


def _account_of(text: str, accounts: list[str]) -> str:
    (account,) = [a for a in accounts if a in text]
    return account
