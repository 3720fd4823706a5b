"""Every role as its own `chainwatch run --role ROLE` process (2 ingest, 3 workers, 2 senders, 1 bot) on one
PostgreSQL, Anvil and the fake Bot API: a price crash while the active ingest, a worker and the active sender are
SIGKILLed delivers every alert (at most the one send in flight twice), a user's /add during it takes effect at a
later block, and a restart of everything sends nothing again."""

from __future__ import annotations

import asyncio
import collections
import re
import signal
from decimal import Decimal
from pathlib import Path

import asyncpg

from chainwatch.devnet.actions import Position
from chainwatch.roles import WATCHES_CHANNEL
from tests.fork.bot_support import ALICE, is_alert
from tests.fork.cluster_support import borrowers, queue_drained, rows, until
from tests.fork.conftest import CHAT, LOOPBACK_BUDGET, Chain, write_config
from tests.integration.test_store_port import fresh_database
from tests.support.botapi import BotApiServer, SentMessage
from tests.support.roles import RoleProcess, role_processes
from tests.support.rpcproxy import RpcProxy, running_proxy

DEADLINE = 40.0  # a killed worker's chunk waits out its 10 s lease before another worker claims it
_BLOCK = re.compile(r"Block (\d+)")


def _one_send_at_a_time(config: Path) -> Path:
    """`[telegram] concurrent_sends = 1`: a killed sender then repeats at most the one message in flight."""
    text = config.read_text()
    assert "[telegram]\n" in text
    config.write_text(text.replace("[telegram]\n", "[telegram]\nconcurrent_sends = 1\n", 1))
    return config


def _block_of(message: SentMessage) -> int | None:
    found = _BLOCK.search(message.text)
    return None if found is None else int(found.group(1))


def _alerts_at(bot_api: BotApiServer, block: int, chat: int = CHAT) -> list[str]:
    return [m.text for m in bot_api.messages_to(chat) if is_alert(m) and _block_of(m) == block]


def _active(processes: list[RoleProcess], event: str, **facts: object) -> RoleProcess:
    (holder,) = [p for p in processes if p.logged(event, **facts) is not None]
    return holder


async def _cursor_at(url: str, block: int) -> bool:
    found = await rows(url, "SELECT block_number FROM cursor")
    return bool(found) and found[0][0] >= block


async def _nothing_pending(url: str) -> bool:
    (row,) = await rows(url, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL")
    return row[0] == 0


async def _mine(chain: Chain) -> int:
    await chain.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    return int(await chain.web3.eth.block_number)


async def test_a_crash_through_kills_of_the_active_ingest_a_worker_and_the_active_sender_alerts_everyone(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, postgres_url: str, tmp_path: Path
) -> None:
    """Issue 11's cluster test: alerts through three SIGKILLs, an /add mid-crash, then a restart of everything."""
    accounts = await borrowers(chain, 24, "cluster-roles")
    # Not watched by the operator: a user adds it during the crash. Health 1.36 at $2,000, under 1 at $1,300.
    (late,) = [str(a) for a in await chain.actions.fund_accounts(1, label="cluster-roles-late")]
    await chain.actions.open_positions([Position(account=late, supply={"WETH": Decimal(1)},
                                                 borrow={"USDC": Decimal(1250)})])  # fmt: skip
    url = await fresh_database(postgres_url)
    common = dict(watched=accounts, storage_url=url, chain_extra="calls_per_batch = 3",
                  bot="check_cooldown_seconds = 0", messages_per_second=20.0)  # fmt: skip
    config = _one_send_at_a_time(write_config(tmp_path / "cluster.toml", chain, proxy, bot_api, **common))  # type: ignore[arg-type]
    async with running_proxy(chain.node.http_url, chain.node.ws_url) as doomed_rpc, role_processes() as start:
        # The worker to be killed reads through a proxy that is made to hang: it holds its chunk until killed.
        doomed_config = _one_send_at_a_time(write_config(
            tmp_path / "doomed.toml", chain, proxy, bot_api, **common,  # type: ignore[arg-type]
            http_urls=f'[{{ url = "{doomed_rpc.http_url}", requests_per_second = {LOOPBACK_BUDGET} }}]'))  # fmt: skip
        ingests = [await start(config, "ingest-a", "ingest")]
        await ingests[0].wait_logged("ingest.started", deadline=DEADLINE)
        ingests.append(await start(config, "ingest-b", "ingest"))
        workers = [await start(config, "worker-1", "worker"), await start(config, "worker-2", "worker"),
                   await start(doomed_config, "worker-doomed", "worker")]  # fmt: skip
        senders = [await start(config, "sender-a", "sender")]
        await senders[0].wait_logged("role.active", role="sender", deadline=DEADLINE)
        senders.append(await start(config, "sender-b", "sender"))
        bot = await start(config, "bot-a", "bot")
        everyone = [*ingests, *workers, *senders, bot]
        await bot.wait_logged("role.active", role="bot", deadline=DEADLINE)
        await senders[1].wait_logged("role.standby", role="sender", deadline=DEADLINE)

        def alive() -> list[RoleProcess]:
            return [p for p in everyone if p.process.returncode is None]

        active_ingest = _active(ingests, "leadership.acquired")
        await until(lambda: active_ingest.logged("ingest.results_booked") is not None
                    and max(int(e["known"]) for e in active_ingest.events if e.get("event") == "ingest.results_booked")
                    >= len(accounts), "the first reads booked", deadline=DEADLINE, alive=alive())  # fmt: skip
        await until(lambda: _nothing_pending(url), "the start's WARN alerts sent", deadline=DEADLINE, alive=alive())
        assert not ingests[1].logged("leadership.acquired") and not senders[1].logged("role.active", role="sender")

        await doomed_rpc.go_dead("hang")
        bot_api.send_delay = 0.1  # a send is in flight when the sender's kill lands
        crash = await chain.actions.set_price("WETH", 1300)
        active_ingest.kill()  # maybe before it turned the crash block into work: the standby must then
        assert await active_ingest.ended() != 0
        replied_from = len(bot_api.messages)
        bot_api.send_text(ALICE, f"/add {late} late vault")

        async def doomed_holds() -> bool:
            return bool(await rows(url, "SELECT 1 FROM work_chunks WHERE block_number = $1 AND state = 'claimed' "
                                        "AND claimed_by = 'worker-doomed'", crash))  # fmt: skip

        await until(doomed_holds, "the doomed worker holding a chunk of the crash block", deadline=DEADLINE,
                    alive=alive())  # fmt: skip
        workers[2].kill()
        assert await workers[2].ended() != 0
        await until(lambda: len(_alerts_at(bot_api, crash)) >= 3, "the crash's first alerts sent", deadline=DEADLINE,
                    alive=alive())  # fmt: skip
        active_sender = _active(senders, "role.active", role="sender")
        active_sender.kill()
        assert await active_sender.ended() != 0
        (standby_ingest,) = [p for p in ingests if p is not active_ingest]
        (standby_sender,) = [p for p in senders if p is not active_sender]
        await standby_ingest.wait_logged("leadership.acquired", deadline=DEADLINE)
        await standby_sender.wait_logged("role.active", role="sender", deadline=DEADLINE)

        # The crash: every watched account alerted at its block, each once but for the one send in flight.
        await until(lambda: {a for t in _alerts_at(bot_api, crash) for a in accounts if a in t} == set(accounts),
                    "every account's crash alert sent", deadline=DEADLINE, alive=alive())  # fmt: skip
        await until(lambda: queue_drained(url), "every chunk done", deadline=DEADLINE, alive=alive())
        await until(lambda: _nothing_pending(url), "the outbox drained", deadline=DEADLINE, alive=alive())
        queued = [r[0] for r in await rows(url, "SELECT text FROM outbox WHERE kind <> 'REPLY' AND block = $1 "
                                                "AND chat_id = $2", crash, CHAT)]  # fmt: skip
        assert sorted(a for t in queued for a in accounts if a in t) == sorted(accounts)  # one each
        sent = collections.Counter(_alerts_at(bot_api, crash))
        assert set(sent) == set(queued)
        assert sum(n - 1 for n in sent.values()) <= 1, f"more duplicates than sender kills: {sent}"
        assert {t.split()[1] for t in sent} <= {"CRITICAL", "LIQUIDATABLE"}
        writers = await rows(url, "SELECT DISTINCT written_by FROM work_chunks WHERE block_number = $1", crash)
        print(f"\ncrash block {crash}: work written by {sorted(r[0] for r in writers)}, {len(sent)} alerts, "
              f"{sum(n - 1 for n in sent.values())} sent twice")  # fmt: skip

        # The /add made during the crash: answered, stored, and the position read at a later block.
        reply = await bot_api.wait_for_message(ALICE, lambda m: not is_alert(m), after=replied_from, timeout=DEADLINE)
        assert "Watching from the next block" in reply.text and late in reply.text, reply.text
        (watch,) = await rows(url, "SELECT chat_id FROM chat_watches WHERE lower(address) = lower($1)", late)
        assert watch[0] == ALICE
        later = await _mine(chain)
        await until(lambda: any(is_alert(m) and late in m.text for m in bot_api.messages_to(ALICE)),
                    "the added account's alert to its chat", deadline=DEADLINE, alive=alive())  # fmt: skip
        (added,) = [m for m in bot_api.messages_to(ALICE) if is_alert(m)]
        # Read at the first block the ingest saved after the change: the crash block itself if the standby had not
        # saved it yet, else the one mined after the reply.
        assert added.text.split()[1] == "LIQUIDATABLE" and crash <= (_block_of(added) or 0) <= later
        assert not any(late in t for t in _alerts_at(bot_api, crash) + queued)  # the operator's chat never had it

        # Everything stopped and started again: quiet blocks send nothing twice.
        for running in alive():
            running.kill(signal.SIGTERM)
        for running in everyone:
            assert await running.ended() in (0, -signal.SIGKILL), running.name
        await until(lambda: _nothing_pending(url), "the outbox still empty", deadline=DEADLINE)
        delivered = len(bot_api.messages)
        again = [await start(config, f"{name}-again", role) for name, role in (
            ("ingest-a", "ingest"), ("ingest-b", "ingest"), ("worker-1", "worker"), ("worker-2", "worker"),
            ("worker-3", "worker"), ("sender-a", "sender"), ("sender-b", "sender"), ("bot-a", "bot"))]  # fmt: skip
        await _one_active_of_each(again)
        quiet = [await _mine(chain), await _mine(chain)]
        await until(lambda: _cursor_at(url, quiet[-1]), "the restarted ingest past the quiet blocks",
                    deadline=DEADLINE, alive=again)  # fmt: skip
        await until(lambda: queue_drained(url), "every chunk done after the restart", deadline=DEADLINE, alive=again)
        await until(lambda: _nothing_pending(url), "nothing left to send", deadline=DEADLINE, alive=again)
        assert len(bot_api.messages) == delivered, bot_api.messages[delivered:]


async def _one_active_of_each(processes: list[RoleProcess]) -> None:
    """Waits for an active ingest (it starts at the first block past the cursor), sender and bot."""
    for role, event in (("ingest", "leadership.acquired"), ("sender", "role.active"), ("bot", "role.active")):
        candidates = [p for p in processes if p.name.startswith(role)]
        facts = {} if role == "ingest" else {"role": role}
        await until(lambda: any(p.logged(event, **facts) for p in candidates), f"an active {role}",
                    deadline=DEADLINE, alive=processes)  # fmt: skip
        _active(candidates, event, **facts)  # and only one


async def test_an_add_to_the_bot_role_is_stored_notified_and_answered_by_the_sender_role(
    chain: Chain, proxy: RpcProxy, bot_api: BotApiServer, postgres_url: str, tmp_path: Path
) -> None:
    """The bot process has no sender: its reply waits in the outbox until a sender process sends it."""
    (account,) = [str(a) for a in await chain.actions.fund_accounts(1, label="bot-role-add")]
    await chain.actions.open_positions([Position(account=account, supply={"WETH": Decimal(1)},
                                                 borrow={"USDC": Decimal(1000)})])  # fmt: skip
    url = await fresh_database(postgres_url)
    config = write_config(tmp_path / "bot.toml", chain, proxy, bot_api, watched=[], storage_url=url,
                          bot="check_cooldown_seconds = 0")  # fmt: skip
    listener = await asyncpg.connect(url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(WATCHES_CHANNEL, lambda _c, _p, _channel, payload: heard.put_nowait(payload))
        async with role_processes() as start:
            bot = await start(config, "bot-a", "bot")
            await bot.wait_logged("role.active", role="bot", deadline=DEADLINE)
            bot_api.send_text(ALICE, f"/add {account} my vault")
            async with asyncio.timeout(DEADLINE):
                assert await heard.get() == str(chain.devnet.chain_id)
            (watch,) = await rows(url, "SELECT chat_id, label FROM chat_watches WHERE lower(address) = lower($1)",
                                  account)  # fmt: skip
            assert tuple(watch) == (ALICE, "my vault")
            await until(lambda: rows(url, "SELECT 1 FROM outbox WHERE kind = 'REPLY' AND chat_id = $1", ALICE),
                        "the reply queued by the bot", deadline=DEADLINE, alive=[bot])  # fmt: skip
            (queued,) = await rows(url, "SELECT id, text, sent_at FROM outbox WHERE kind = 'REPLY' AND chat_id = $1",
                                   ALICE)  # fmt: skip
            assert queued[2] is None and bot_api.messages_to(ALICE) == []  # the bot does not send
            sender = await start(config, "sender-a", "sender")
            reply = await bot_api.wait_for_message(ALICE, lambda m: True, timeout=DEADLINE)
            assert reply.text == queued[1] and f"Watching from the next block:\n{account} (my vault)" in reply.text
            await until(lambda: _nothing_pending(url), "the reply recorded as sent", deadline=DEADLINE,
                        alive=[bot, sender])  # fmt: skip
            assert sender.logged("role.active", role="sender") is not None
    finally:
        await listener.close()
