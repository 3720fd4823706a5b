"""The `chainwatch` command: run, check, demo, migrate, devnet deploy.

Bad input ends with status 2 and one line saying what is wrong and where; nothing runs at import.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from eth_utils import is_address, to_checksum_address

from chainwatch.alerts.state import Thresholds
from chainwatch.config import Config, ConfigError, load_config
from chainwatch.logs import configure_logging, register_secret
from chainwatch.postgres_url import password_of

log = structlog.get_logger(__name__)

USAGE_ERROR = 2


class UsageError(Exception):
    """A command-line argument is wrong; the text names it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainwatch", description="Watches DeFi lending positions; alerts on Telegram.")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"],
        help="default: info (warning for the demo, so its story and alerts stay readable)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="watch the configured addresses until SIGINT/SIGTERM")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument(
        "--role", action="append", metavar="ROLE",
        help="run only this role (repeatable): ingest, worker, sender, bot; needs [storage] url = postgresql://",
    )  # fmt: skip
    run.add_argument("--name", help="this process's name in logs and /health (default: host:pid)")
    run.add_argument("--metrics-listen", metavar="HOST:PORT",
                     help="serve /metrics and /health here instead of [metrics] listen (port 0: any free port)")  # fmt: skip
    check = commands.add_parser("check", help="print an address's positions and health once")
    check.add_argument("--config", required=True, type=Path)
    check.add_argument("address")
    commands.add_parser("demo", help="run on a local Anvil chain with a price crash, no accounts needed")
    migrate = commands.add_parser(
        "migrate", help="copy a chain's state from its SQLite file into PostgreSQL (stop the watcher first)"
    )
    migrate.add_argument("--from", dest="source", required=True, type=Path, metavar="SQLITE_PATH")
    migrate.add_argument("--to", dest="target", required=True, metavar="POSTGRESQL_URL")
    migrate.add_argument("--chain-id", required=True, type=int, help="the chain the SQLite file watched")
    devnet = commands.add_parser("devnet", help="local chain tooling")
    devnet_commands = devnet.add_subparsers(dest="devnet_command", required=True)
    deploy = devnet_commands.add_parser("deploy", help="deploy the devnet contracts onto a running Anvil")
    deploy.add_argument("--rpc-url", required=True)
    deploy.add_argument("--out", required=True, type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(level=args.log_level or ("warning" if args.command == "demo" else "info"))
    try:
        match args.command:
            case "run":
                config = _with_metrics_listen(_load(args.config), args.metrics_listen)
                if args.role:
                    return _run_roles(config, args.role, args.name)
                return _run_service(config)
            case "check":
                return asyncio.run(_check(_load(args.config), _address_argument(args.address)))
            case "demo":
                from chainwatch.demo import run_demo

                return asyncio.run(run_demo())
            case "migrate":
                return asyncio.run(_migrate(args.source, args.target, args.chain_id))
            case "devnet":
                from chainwatch.devnet.cli import deploy_command

                asyncio.run(deploy_command(args.rpc_url, args.out))
                return 0
    except (ConfigError, UsageError) as error:
        print(f"chainwatch: {error}", file=sys.stderr)
        return USAGE_ERROR
    raise AssertionError(f"unhandled command {args.command}")


def _load(path: Path) -> Config:
    config = load_config(path)
    token = config.telegram_token()
    if token is not None:
        register_secret(token.reveal())
    if config.storage.url is not None and (password := password_of(config.storage.url.reveal())):
        register_secret(password)
    for url in (*config.chain.ws_urls, *config.chain.rpc_http_urls):
        # Providers put API keys in the path or query: neither may reach a log line.
        register_secret(url)
        parts = urlsplit(url)
        secret_part = parts.path.strip("/") + (f"?{parts.query}" if parts.query else "")
        if len(secret_part) >= 8:
            register_secret(secret_part)
    return config


async def _migrate(source: Path, target: str, chain_id: int) -> int:
    from chainwatch.postgres_url import StorageUnavailable, is_postgres_url, password_of, redacted
    from chainwatch.schema import SchemaTooNew

    if not is_postgres_url(target):
        raise UsageError(f"--to: expected a postgresql:// URL, got {target[:20]!r}")
    if password := password_of(target):
        register_secret(password)
    try:
        from chainwatch.store_copy import CopyRefused, copy_sqlite_to_postgres
    except ImportError:
        raise UsageError("migrate needs asyncpg: pip install 'chainwatch[postgres]'") from None
    try:
        copied = await copy_sqlite_to_postgres(source, target, chain_id)
    except (CopyRefused, StorageUnavailable, SchemaTooNew) as error:
        print(f"chainwatch: migrate: {error}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{n} {table}" for table, n in copied.items())
    print(f"copied chain {chain_id} from {source} to {redacted(target)}: {summary}")
    return 0


def _with_metrics_listen(config: Config, listen: str | None) -> Config:
    """`--metrics-listen` over `[metrics] listen`: several processes on one machine each need a port of their own."""
    import re

    import msgspec

    from chainwatch.config import MetricsConfig

    if listen is None:
        return config
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", listen) or int(listen.rpartition(":")[2]) > 65535:
        raise UsageError(f"--metrics-listen: expected HOST:PORT (e.g. 127.0.0.1:9464, port 0 for any), got {listen!r}")
    metrics = MetricsConfig(listen=listen) if config.metrics is None else msgspec.structs.replace(config.metrics, listen=listen)
    return msgspec.structs.replace(config, metrics=metrics)


def _run_roles(config: Config, roles: list[str], name: str | None) -> int:
    from chainwatch.postgres_url import is_postgres_url
    from chainwatch.roles import ROLES, RUNNERS, RoleError, Runner, runner

    for role in roles:
        if role not in ROLES:
            raise UsageError(f"--role: unknown role {role!r} (valid: {', '.join(ROLES)})")
    if config.storage.url is None or not is_postgres_url(config.storage.url.reveal()):
        raise UsageError('--role needs [storage] url = "postgresql://..." in the config: the roles share PostgreSQL')
    runners: dict[str, Runner] = {}
    for role in dict.fromkeys(roles):  # once each, in the order asked
        try:
            runners[role] = runner(role)
        except ImportError as error:
            module = RUNNERS[role].partition(":")[0]
            if error.name == "asyncpg":
                raise UsageError("--role needs asyncpg: pip install 'chainwatch[postgres]'") from None
            if error.name != module:
                raise
            raise UsageError(f"--role {role}: this build of chainwatch has no {module} yet") from None
    from chainwatch.roles.process import process_name, run_roles

    try:
        asyncio.run(run_roles(config, runners, name or process_name()))
    except RoleError as error:
        print(f"chainwatch: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


def _address_argument(text: str) -> str:
    if not is_address(text):
        raise UsageError(f"ADDRESS: {text!r} is not a 20-byte hex address (or has a bad EIP-55 checksum)")
    return to_checksum_address(text)


def _run_service(config: Config) -> int:
    from chainwatch.app import StartupError, Watcher

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        interrupts = 0

        def on_signal() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts > 1:
                # A second signal means "now": skip the drain.
                raise SystemExit(130)
            log.info("watcher.stopping")
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        try:
            await Watcher(config).serve(stop)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        asyncio.run(serve())
    except StartupError as error:
        print(f"chainwatch: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


async def _check(config: Config, address: str) -> int:
    from chainwatch.alerts.message import format_health
    from chainwatch.alerts.state import classify
    from chainwatch.app import read_once
    from chainwatch.protocols.base import ReadError
    from chainwatch.reader import ReadFailed
    from chainwatch.rpc import RpcError

    thresholds = _thresholds_for(config, address)
    try:
        outcomes = await read_once(config, address)
    except (RpcError, ReadFailed, ReadError) as error:
        print(f"chainwatch: cannot read {address}: {error}", file=sys.stderr)
        return 1
    for target, outcome in outcomes:
        if isinstance(outcome, (ReadError, ReadFailed)):
            print(f"{target.protocol}: {address}: could not read: {outcome}")
            continue
        for reading in outcome.readings:
            level = classify(reading.health_factor, None, thresholds)
            market = f" market {reading.key.market}" if reading.key.market else ""
            liquidation = (
                f" liquidation {reading.liquidation_asset} at {reading.liquidation_price:,.2f} {reading.currency}"
                if reading.liquidation_price is not None
                else ""
            )
            print(
                f"{target.protocol}{market}: {address} health {format_health(reading.health_factor)} [{level.name}] "
                f"collateral {reading.collateral:,.2f} {reading.currency} debt {reading.debt:,.2f} {reading.currency}"
                f"{liquidation} block {reading.block}"
            )
    return 0


def _thresholds_for(config: Config, address: str) -> Thresholds:
    """The watch's thresholds for a watched address; `[alerts]` for any other address `check` is asked about."""
    for watch in config.watch:
        if watch.address == address:
            return config.thresholds_for(watch)
    return config.alerts


if __name__ == "__main__":
    sys.exit(main())
