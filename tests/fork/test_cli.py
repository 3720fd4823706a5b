"""The `chainwatch` command as an operator runs it: a real process, real signals, real files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

from tests.fork.conftest import DEADLINE, TOKEN, Chain, aave_protocol
from tests.fork.test_spine import health_at, open_standard_positions

CHAINWATCH = [sys.executable, "-m", "chainwatch.cli"]


def plain_config(path: Path, chain: Chain, accounts: list[str], *, telegram: str = "") -> Path:
    watches = "\n".join(f'[[watch]]\naddress = "{a}"\nlabel = "cli {i}"\n' for i, a in enumerate(accounts))
    path.write_text(f"""
[chain]
chain_id = {chain.devnet.chain_id}
ws_urls = ["{chain.node.ws_url}"]
multicall3 = "{chain.devnet.multicall3}"
{telegram}
[storage]
path = "{path.parent / 'cli.db'}"
{aave_protocol(chain)}
{watches}
""")
    return path


@asynccontextmanager
async def chainwatch_process(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        *CHAINWATCH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str], deadline: float = DEADLINE) -> str:
    """Reads lines until one contains `needle` (deadline-bound); every line read is kept in `seen`."""
    async with asyncio.timeout(deadline):
        while line := (await stream.readline()).decode():
            seen.append(line)
            if needle in line:
                return line
    raise AssertionError(f"stream ended without {needle!r}; got:\n{''.join(seen)}")


class TestRun:
    async def test_alerts_then_drains_and_exits_zero_on_sigterm(self, chain: Chain, tmp_path: Path) -> None:
        """`chainwatch run` prints the alert (no token: standard output), and SIGTERM ends it cleanly with status 0."""
        exposed, _ = await open_standard_positions(chain)
        config = plain_config(tmp_path / "run.toml", chain, [exposed])
        async with chainwatch_process("run", "--config", str(config)) as process:
            assert process.stdout is not None and process.stderr is not None
            logs: list[str] = []
            await read_until(process.stderr, "listener.subscribed", logs)
            await chain.actions.set_price("WETH", 1300)
            out: list[str] = []
            await read_until(process.stdout, "CRITICAL", out)
            await read_until(process.stdout, "Block", out)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(DEADLINE):
                remaining = (await process.stderr.read()).decode()
                code = await process.wait()
        assert code == 0
        events = [json.loads(line)["event"] for line in [*logs, *remaining.splitlines()] if line.startswith("{")]
        assert "watcher.stopped" in events
        assert exposed in "".join(out)

    async def test_token_never_logged(self, chain: Chain, tmp_path: Path) -> None:
        """With a token that the (unreachable) Bot API rejects, neither logs nor output ever show the token."""
        exposed, _ = await open_standard_positions(chain)
        telegram = '[telegram]\ntoken_env = "CW_TOKEN"\napi_base = "http://127.0.0.1:9"\ndefault_chat_id = 1\n'
        config = plain_config(tmp_path / "secret.toml", chain, [exposed], telegram=telegram)
        async with chainwatch_process("run", "--config", str(config), env={"CW_TOKEN": TOKEN}) as process:
            assert process.stdout is not None and process.stderr is not None
            logs: list[str] = []
            await read_until(process.stderr, "listener.subscribed", logs)
            await chain.actions.set_price("WETH", 1300)
            await read_until(process.stderr, "alert.deferred", logs)  # the send failed and will be retried
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(DEADLINE + 15):
                rest_err, rest_out = (await process.stderr.read()).decode(), (await process.stdout.read()).decode()
                await process.wait()
        everything = "".join(logs) + rest_err + rest_out
        assert TOKEN not in everything and TOKEN.split(":")[1] not in everything


    async def test_refused_token_stops_the_start_without_showing_it(self, chain: Chain, tmp_path: Path) -> None:
        """A token the Bot API refuses (401) ends the start in one line, status 2, naming neither token nor URL."""
        from tests.support.botapi import running_bot_api

        async with running_bot_api("999:the-token-the-server-expects") as bot_api:
            telegram = f'[telegram]\ntoken_env = "CW_TOKEN"\napi_base = "{bot_api.base_url}"\ndefault_chat_id = 1\n'
            config = plain_config(tmp_path / "refused.toml", chain, [], telegram=telegram)
            async with chainwatch_process("run", "--config", str(config), env={"CW_TOKEN": TOKEN}) as process:
                async with asyncio.timeout(DEADLINE):
                    out, err = await process.communicate()
        assert process.returncode == 2
        (line,) = err.decode().strip().splitlines()[-1:]
        assert line.startswith("chainwatch: telegram:"), err.decode()
        everything = out.decode() + err.decode()
        assert TOKEN not in everything and TOKEN.split(":")[1] not in everything


class TestCheck:
    async def test_prints_health_of_an_address(self, chain: Chain, tmp_path: Path) -> None:
        """`chainwatch check` prints the address's health factor, collateral and debt as the Pool reports them."""
        exposed, _ = await open_standard_positions(chain)
        config = plain_config(tmp_path / "check.toml", chain, [])
        async with chainwatch_process("check", "--config", str(config), exposed.lower()) as process:
            async with asyncio.timeout(DEADLINE):
                out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        text = out.decode()
        # Rounded down, so interest accrued since the position opened can show 1.699: compare with the Pool itself.
        found = re.search(r"health ([0-9.]+) .* block (\d+)", text)
        assert found and "neverland" in text and exposed in text, text
        assert Decimal(found.group(1)) == await health_at(chain, exposed, int(found.group(2)))
        assert "collateral 2,000.00 USD" in text and "debt 1,000.00 USD" in text
        assert "liquidation WETH at 1,176.47 USD" in text  # 2000 / 1.7

    async def test_bad_address_is_one_line_status_2(self, chain: Chain, tmp_path: Path) -> None:
        """A malformed address is refused with status 2 and one line naming the argument."""
        config = plain_config(tmp_path / "check.toml", chain, [])
        async with chainwatch_process("check", "--config", str(config), "0x1234") as process:
            async with asyncio.timeout(DEADLINE):
                out, err = await process.communicate()
        assert process.returncode == 2
        assert err.decode().strip().splitlines() == ["chainwatch: ADDRESS: '0x1234' is not a 20-byte hex address (or has a bad EIP-55 checksum)"]


class TestConfigErrors:
    async def test_broken_config_is_one_line_status_2(self, tmp_path: Path) -> None:
        """A config with an unknown key exits 2 with one line naming the file and the key."""
        config = tmp_path / "bad.toml"
        config.write_text('[chain]\nchain_id = 1\nws_urls = ["ws://127.0.0.1:1"]\nwsurl = 3\n')
        async with chainwatch_process("run", "--config", str(config)) as process:
            async with asyncio.timeout(DEADLINE):
                out, err = await process.communicate()
        assert process.returncode == 2
        assert err.decode().strip().splitlines() == [f"chainwatch: {config}: unknown key chain.wsurl"]


    async def test_corpus_files_are_one_line_status_2_without_the_token(self, tmp_path: Path) -> None:
        """Broken files from the corpus (bad TOML, NaN, a 50 MB file, a directory as storage, binary) exit 2 with
        one line each, no traceback and no token; a file that is not SQLite fails the start the same way."""
        from chainwatch.config import MAX_CONFIG_BYTES
        from tests.unit.test_config_corpus import FULL, TOKEN as CORPUS_TOKEN

        (tmp_path / "db-dir").mkdir()
        (tmp_path / "not-sqlite.db").write_bytes(b"not a database, just bytes" * 100)
        huge = FULL + f"# {CORPUS_TOKEN}\n" * (50 * 1024 * 1024 // 50)
        cases = {
            "syntax.toml": (FULL.replace("[bot]", "[bot"), "invalid TOML"),
            "nan.toml": (FULL.replace("warn = 1.5", "warn = nan"), "alerts.warn: must be a finite number"),
            "huge.toml": (huge, f"larger than {MAX_CONFIG_BYTES // 1024} KiB"),
            "dir.toml": (FULL.replace('path = "chainwatch.db"', 'path = "db-dir"'), "storage.path: is a directory"),
            "binary.toml": (bytes(range(256)) + CORPUS_TOKEN.encode(), "not UTF-8"),
            "foreign.toml": (FULL.replace('path = "chainwatch.db"', 'path = "not-sqlite.db"'),
                             "storage.path: cannot open"),
        }  # fmt: skip
        for name, (content, expected) in cases.items():
            config = tmp_path / name
            config.write_bytes(content if isinstance(content, bytes) else content.encode())
            async with chainwatch_process("run", "--config", str(config)) as process:
                async with asyncio.timeout(DEADLINE):
                    out, err = await process.communicate()
            text = err.decode()
            assert process.returncode == 2, (name, text)
            (line,) = text.strip().splitlines()
            assert line.startswith("chainwatch: ") and expected in line, (name, line)
            assert CORPUS_TOKEN not in text + out.decode() and CORPUS_TOKEN.partition(":")[2] not in text, name


class TestDevnetDeploy:
    async def test_writes_devnet_json(self, tmp_path: Path) -> None:
        """`chainwatch devnet deploy` deploys onto a running Anvil and writes the addresses file."""
        from chainwatch.devnet.anvil import running_anvil

        out_file = tmp_path / "devnet.json"
        async with running_anvil() as node:
            async with chainwatch_process("devnet", "deploy", "--rpc-url", node.http_url, "--out", str(out_file)) as process:
                async with asyncio.timeout(DEADLINE):
                    _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        written = json.loads(out_file.read_text())
        assert written["chain_id"] == 31337
        assert written["multicall3"] == "0xcA11bde05977b3631167028862bE2a173976CA11"
        assert set(written["aave_v3"]) >= {"pool_addresses_provider", "pool", "oracle", "data_provider", "reserves"}
        assert set(written["aave_v3"]["reserves"]) >= {"WETH", "WBTC", "USDC"}


class TestStartupErrors:
    async def test_unreachable_node_is_retried_until_sigterm(self, tmp_path: Path, chain: Chain) -> None:
        """With no node at the configured URL, `run` keeps retrying with a log line naming no URL; SIGTERM ends it, 0."""
        config = plain_config(tmp_path / "down.toml", chain, [])
        config.write_text(config.read_text().replace(chain.node.ws_url, "ws://127.0.0.1:9/"))
        async with chainwatch_process("run", "--config", str(config)) as process:
            assert process.stderr is not None
            logs: list[str] = []
            # The first retry comes once a request has given up on the endpoint (rpc.PATIENCE_SECONDS).
            await read_until(process.stderr, "watcher.startup_retry", logs, deadline=DEADLINE + 20)
            process.send_signal(signal.SIGTERM)  # in the middle of the retries: the wait, or the next attempt
            async with asyncio.timeout(DEADLINE):
                remaining = (await process.stderr.read()).decode()
                code = await process.wait()
        assert code == 0
        lines = [json.loads(line) for line in [*logs, *remaining.splitlines()] if line.startswith("{")]
        (retry, *_) = [e for e in lines if e["event"] == "watcher.startup_retry"]
        assert retry["step"] == "chain_id" and retry["attempt"] == 1 and "http_urls[0]" in retry["error"]
        assert any(e["event"] == "watcher.stopped" for e in lines)
        assert "127.0.0.1:9" not in "".join(logs) + remaining

    async def test_wrong_chain_id_is_one_line_not_retried(self, tmp_path: Path, chain: Chain) -> None:
        """A node on another chain is not a transient failure: one line, status 2, without a single retry."""
        config = plain_config(tmp_path / "other-chain.toml", chain, [])
        config.write_text(config.read_text().replace(f"chain_id = {chain.devnet.chain_id}", "chain_id = 143"))
        async with chainwatch_process("run", "--config", str(config)) as process:
            async with asyncio.timeout(DEADLINE):
                _, err = await process.communicate()
        assert process.returncode == 2
        (line,) = err.decode().strip().splitlines()
        assert line == f"chainwatch: chain.chain_id is 143 but the node reports {chain.devnet.chain_id}"

    async def test_wrong_provider_address_is_one_line(self, tmp_path: Path, chain: Chain) -> None:
        """A pool_addresses_provider that is not one fails at start with one line naming the call that failed."""
        config = plain_config(tmp_path / "wrong.toml", chain, [])
        config.write_text(config.read_text().replace(chain.devnet.aave_v3.pool_addresses_provider, chain.accounts[0]))
        async with chainwatch_process("run", "--config", str(config)) as process:
            async with asyncio.timeout(DEADLINE):
                _, err = await process.communicate()
        assert process.returncode == 2
        (line,) = err.decode().strip().splitlines()
        assert line.startswith("chainwatch: cannot read the configured protocols on chain:") and "PoolAddressesProvider" in line


class TestDemo:
    async def test_demo_fires_on_all_four_protocols_and_exits_zero(self) -> None:
        """`chainwatch demo` needs nothing, alerts on each protocol, recovers, and exits 0 well within 60 s."""
        async with chainwatch_process("demo") as process:
            async with asyncio.timeout(60):
                out, err = await process.communicate()
        assert process.returncode == 0, err.decode()[-2000:]
        text = out.decode()
        for protocol in ("neverland", "morpho", "euler", "curvance"):
            assert f"CRITICAL on {protocol}" in text, protocol
            assert f"RECOVERED on {protocol}" in text, protocol
        assert "LIQUIDATABLE on" in text
        assert "steady" not in text.split("moving the WETH price")[1]  # the WBTC-only position never alerts

    async def test_demo_plays_a_conversation_with_the_bot(self) -> None:
        """The demo's transcript: Alice adds, checks, reads her position and what to repay, opens an alert's
        Position button and mutes; after the mute she hears LIQUIDATABLE and nothing milder."""
        async with chainwatch_process("demo") as process:
            async with asyncio.timeout(60):
                out, err = await process.communicate()
        assert process.returncode == 0, err.decode()[-2000:]
        text = out.decode()
        for said in ("/add ", "/check", "/position leveraged", "/repay leveraged 1.8", "(presses [Position])",
                     "/mute leveraged 2h"):  # fmt: skip
            assert f"[alice -> bot] {said}" in text, said
        assert "Watching from the next block:" in text and "repay " in text and "liquidation if WETH falls to" in text
        assert "[Position]  [Mute 1h]  [Check now]" in text
        to_alice = [part.split("\n", 1)[0].strip() for part in text.split("[bot -> alice]\n")[1:]]
        after_mute = to_alice[to_alice.index(next(t for t in to_alice if t.startswith("Muted"))) + 1 :]
        assert [t.split()[1] for t in after_mute] == ["LIQUIDATABLE"]

    async def test_prints_positions_on_all_four_protocols(self, chain: Chain, tmp_path: Path) -> None:
        """With all four protocols configured, `check` prints the address's health on each, with its market."""
        from chainwatch.demo import _config_text
        from chainwatch.devnet.curvance import CurvanceActions
        from chainwatch.devnet.euler import EulerActions
        from chainwatch.devnet.morpho import MorphoActions

        devnet = chain.devnet
        assert devnet.morpho_blue and devnet.euler_v2 and devnet.curvance
        borrower, url = chain.accounts[2], chain.node.http_url
        await chain.actions.open_position(borrower, supply={"WETH": 1}, borrow={"USDC": 1000})
        async with MorphoActions(url, devnet.morpho_blue) as morpho:
            await morpho.open_position(borrower, "WETH/USDC", collateral=1, borrow=1000)
        euler = EulerActions(url, devnet, devnet.euler_v2)
        try:
            await euler.open_position(borrower, collateral={"WETH": 1}, borrow=1000)
        finally:
            await euler.aclose()
        async with CurvanceActions(url, devnet.curvance) as curvance:
            await curvance.open_position(borrower, collateral={"WETH": 1}, borrow={"USDC": 1000})
        config = tmp_path / "four.toml"
        config.write_text(_config_text(chain.node.ws_url, devnet, tmp_path / "four.db").split("[[watch]]")[0])
        async with chainwatch_process("check", "--config", str(config), borrower) as process:
            async with asyncio.timeout(DEADLINE):
                out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        expected = {"neverland": "1.700", "morpho": "1.720", "euler": "1.700", "curvance": "1.600"}
        for protocol, health in expected.items():
            (line,) = [line for line in lines if line.startswith(protocol) and " 0.000" not in line and "no debt" not in line]
            shown = re.search(r"health ([0-9.]+)", line)
            # Rounded down: a few seconds of interest since opening can take the last digit one lower.
            assert shown and Decimal(health) - Decimal("0.001") <= Decimal(shown.group(1)) <= Decimal(health), line
            assert "liquidation WETH at" in line, line


class TestClusterDemo:
    async def test_the_cluster_demo_survives_its_kills_and_sends_each_alert_once(self) -> None:
        """`scripts/cluster`: seven role processes on an embedded PostgreSQL; after the active ingest and sender
        are SIGKILLed a standby of each holds the lock, and every alert of the story reaches Telegram once."""
        import sys

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chainwatch.cluster_demo", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(150):
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
        assert process.returncode == 0, (out.decode()[-3000:], err.decode()[-2000:])
        lines = [line for line in out.decode().splitlines() if line.startswith("== demo: ")]
        for role in ("ingest", "sender"):
            (kill,) = [i for i, line in enumerate(lines) if line.endswith(f"(the active {role})")]
            victim = lines[kill].split()[3]
            took_over = [line for line in lines[kill:] if f"leadership.acquired duty={role}:" in line]
            assert took_over and victim not in took_over[0], (role, lines[kill:])
        received = [line for line in lines if "telegram <- " in line]
        sent = [line for line in lines if " alert.sent " in line]
        assert len(received) == len(sent) == 18, lines  # the story's alerts: 4 + 1 + 5 + 3 + 5, none twice
        for protocol in ("neverland", "morpho", "euler", "curvance"):
            assert any(f"RECOVERED on {protocol}" in line for line in received), protocol
