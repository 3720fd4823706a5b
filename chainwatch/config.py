"""chainwatch's configuration: one frozen tree decoded from a TOML file by `load_config`.

Every check lives on the types below (constraints with `Meta`, cross-field rules in `__post_init__`); `load_config`
only reads the file, decodes it once and turns any failure into a one-line `ConfigError`.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import msgspec
from eth_utils import to_checksum_address
from msgspec import Meta

from chainwatch.alerts.state import Thresholds
from chainwatch.refresh import RefreshPolicy
from chainwatch.config_errors import explain, show, toml_type
from chainwatch.model import Record
from chainwatch.postgres_url import is_postgres_url, password_of

__all__ = [
    "AaveV3Config",
    "BotConfig",
    "MetricsConfig",
    "CurvanceConfig",
    "EulerV2Config",
    "MorphoBlueConfig",
    "Address",
    "ChainConfig",
    "HttpEndpoint",
    "Config",
    "ConfigError",
    "EnvSecret",
    "ProtocolConfig",
    "Secret",
    "StorageConfig",
    "TelegramConfig",
    "Thresholds",
    "Watch",
    "load_config",
    "parse_address",
]


class ConfigError(Exception):
    """A config file that cannot be used; `str()` is one line: `<file>: <key>: <what is wrong>`."""

    def __init__(self, file: str, message: str, *, key: str | None = None) -> None:
        # A stray newline (a quoted value, a library message) would break the CLI's one-line contract.
        message = " ".join(message.split("\n"))
        super().__init__(f"{file}: {message}")
        self.file = file
        self.key = key
        self.message = message


# --- values that decode from strings ------------------------------------------------------------------------------


class Address(str):
    """An EVM address in EIP-55 checksum form; build one with `parse_address`."""

    __slots__ = ()


_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def parse_address(text: str) -> Address:
    """The checksummed address for `text`; all-lower/all-upper hex is accepted, wrong mixed case is not."""
    if not _HEX_ADDRESS.fullmatch(text):
        raise ValueError(f"expected a 0x-prefixed address of 40 hex digits, got {show(text)}")
    checksummed = to_checksum_address(text)
    digits = text[2:]
    # Mixed case is a checksum claim (EIP-55); a wrong one usually means a typo, so it must not be fixed silently.
    if digits != digits.lower() and digits != digits.upper() and text != checksummed:
        raise ValueError(f"bad EIP-55 checksum {show(text)}")
    return Address(checksummed)


class Secret:
    """A string that never shows itself in a repr, str or log; `reveal()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._value == self._value  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._value)


class EnvSecret(Secret):
    """A `Secret` read from the environment variable `name` when the config was loaded."""

    __slots__ = ("name",)

    def __init__(self, name: str, value: str) -> None:
        super().__init__(value)
        self.name = name

    def __repr__(self) -> str:
        return f"EnvSecret({self.name!r}, '***')"

    __str__ = __repr__


# Plain strings with a shape: `description` doubles as the wording of the error when the pattern does not match.
# No fragment: a URL library would drop it, and a key in it would then be lost or, worse, quoted in an error.
WsUrl = Annotated[str, Meta(pattern=r"^wss?://[^\s/#:]+(:\d+)?(/[^\s#]*)?$", description="a ws:// or wss:// URL")]
HttpUrl = Annotated[str, Meta(pattern=r"^https?://[^\s/#:]+(:\d+)?(/[^\s#]*)?$", description="an http:// or https:// URL")]
Positive = Annotated[int, Meta(gt=0)]
HealthFactor = Annotated[float, Meta(gt=1.0)]

MULTICALL3 = Address("0xcA11bde05977b3631167028862bE2a173976CA11")


# --- the tree -----------------------------------------------------------------------------------------------------


class HttpEndpoint(Record, frozen=True, kw_only=True):
    """One `[chain] http_urls` entry: a URL, and how hard chainwatch may use it (a plain string takes the defaults)."""

    url: HttpUrl
    # Monad's public endpoints document 15-25 requests/s per client; 10 stays under the strictest of them with room
    # for a second tool on the same key, and still reads thousands of positions a second through Multicall3.
    requests_per_second: Annotated[float, Meta(gt=0)] = 10.0
    # A request with no answer for this long counts as a failure of the endpoint (it is then rested, see rpc.py).
    timeout_seconds: Annotated[float, Meta(gt=0)] = 10.0


class ChainConfig(Record, frozen=True, kw_only=True):
    """`[chain]`: which chain to watch and how hard to read it."""

    chain_id: Positive
    ws_urls: Annotated[tuple[WsUrl, ...], Meta(min_length=1)]  # the first is primary, the rest are fallbacks
    http_urls: Annotated[tuple[HttpUrl | HttpEndpoint, ...], Meta(min_length=1)] | None = None
    multicall3: Address = MULTICALL3
    max_log_range: Positive = 100
    calls_per_batch: Positive = 200
    read_concurrency: Positive = 4
    # Estimated gas per aggregate3 eth_call: chunks are cut to fit. Monad's public endpoints cap an eth_call at
    # 200M and run it first in a pool of at most ~8.1M, so 20M leaves a wide margin for estimates that run low.
    gas_per_call: Positive = 20_000_000
    # A WebSocket that sends nothing (not even a head) for this long is treated as dead and reopened.
    stall_seconds: Annotated[float, Meta(gt=0)] = 60.0
    # While on a fallback WebSocket, how often to try the primary (ws_urls[0]) again, and go back once it answers.
    primary_probe_seconds: Annotated[float, Meta(gt=0)] = 30.0
    # Replaced blocks up to this deep are undone precisely (what they touched is read again); deeper, everything is.
    max_reorg_depth: Annotated[int, Meta(ge=1, le=10_000)] = 64

    @property
    def rpc_endpoints(self) -> tuple[HttpEndpoint, ...]:
        """`http_urls` as tables, or when absent the websocket URLs with their scheme swapped (ws->http, wss->https)."""
        if self.http_urls is None:
            return tuple(HttpEndpoint(url="http" + url.removeprefix("ws")) for url in self.ws_urls)
        return tuple(HttpEndpoint(url=entry) if isinstance(entry, str) else entry for entry in self.http_urls)

    @property
    def rpc_http_urls(self) -> tuple[str, ...]:
        """The URL of every HTTP endpoint, in config order."""
        return tuple(endpoint.url for endpoint in self.rpc_endpoints)


class TelegramConfig(Record, frozen=True, kw_only=True):
    """`[telegram]`: the bot's token (inline or from the environment) and how fast it may send."""

    token: Secret | None = None
    token_env: EnvSecret | None = None  # named in the file as the variable's name; resolved at load time
    api_base: HttpUrl = "https://api.telegram.org"
    default_chat_id: int | None = None
    # Telegram's documented limits: about 30 messages/s overall and 1/s per chat; stay a little under.
    messages_per_second: Annotated[float, Meta(gt=0)] = 25.0
    per_chat_interval: Annotated[float, Meta(ge=0)] = 1.0
    # Sends in flight at once, each to a different chat: a send takes 100-200 ms, so one at a time caps the bot
    # near 5-10 messages/s; 8 reaches Telegram's limit with room to spare.
    concurrent_sends: Annotated[int, Meta(ge=1, le=64)] = 8

    def __post_init__(self) -> None:
        if self.token is not None and self.token_env is not None:
            raise ValueError("set token or token_env, not both")
        if self.token is None and self.token_env is None:
            raise ValueError("set token or token_env")


class BotConfig(Record, frozen=True, kw_only=True):
    """`[bot]`: the Telegram commands (people adding their own addresses, checking, muting) and their limits."""

    enabled: bool | None = None  # None: on whenever a bot token is set
    max_addresses_per_chat: Annotated[int, Meta(ge=1, le=1000)] = 10
    check_cooldown_seconds: Annotated[float, Meta(ge=0)] = 10.0
    commands_per_minute: Annotated[int, Meta(ge=1)] = 20


Listen = Annotated[str, Meta(pattern=r"^[^\s:]+:\d{1,5}$", description="HOST:PORT, e.g. 127.0.0.1:9464")]


class MetricsConfig(Record, frozen=True, kw_only=True):
    """`[metrics]`: where to serve /metrics and /health, and what /health calls unhealthy."""

    listen: Listen
    stall_seconds: Annotated[float, Meta(gt=0)] = 60.0  # no new head for this long
    max_lag_blocks: Annotated[int, Meta(ge=1)] = 10  # processing this many blocks behind the head seen
    max_outbox_age_seconds: Annotated[float, Meta(gt=0)] = 120.0  # a message waiting this long


class StorageConfig(Record, frozen=True, kw_only=True):
    """`[storage]`: where chainwatch keeps its state. `url` is a postgresql:// URL or a SQLite path; without it,
    `path` names the SQLite file. Relative paths are relative to the config file."""

    path: Path = Path("chainwatch.db")
    # A Secret: a postgresql:// URL may hold a password, and a config is printed in reprs and tracebacks.
    url: Secret | None = None

    @property
    def target(self) -> str | Path:
        """What `storage.open_store` opens: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.url.reveal() if self.url is not None else self.path


class AaveV3Config(Record, frozen=True, kw_only=True, tag_field="kind", tag="aave_v3"):
    """`[[protocols]]` with `kind = "aave_v3"`: an Aave v3 deployment (or fork), found via its addresses provider."""

    name: Annotated[str, Meta(min_length=1)]
    pool_addresses_provider: Address


MarketId = Annotated[str, Meta(pattern=r"^0x[0-9a-fA-F]{64}$", description="a 32-byte hex market id")]
BlockNumber = Annotated[int, Meta(ge=0)]


class MorphoBlueConfig(Record, frozen=True, kw_only=True, tag_field="kind", tag="morpho_blue"):
    """`[[protocols]]` with `kind = "morpho_blue"`: a Morpho Blue singleton and the markets to consider."""

    name: Annotated[str, Meta(min_length=1)]
    morpho: Address
    # Markets always checked for every watched account, besides those found in its past events.
    markets: tuple[MarketId, ...] = ()
    # Where the search of past events for an account's markets starts (bounded eth_getLogs from here).
    discovery_from_block: BlockNumber = 0


class EulerV2Config(Record, frozen=True, kw_only=True, tag_field="kind", tag="euler_v2"):
    """`[[protocols]]` with `kind = "euler_v2"`: the Ethereum Vault Connector and the EVK vaults to listen to."""

    name: Annotated[str, Meta(min_length=1)]
    evc: Address
    vaults: Annotated[tuple[Address, ...], Meta(min_length=1)]
    # Where the search of the EVC's past ControllerStatus events for the watched sub-accounts starts.
    discovery_from_block: BlockNumber = 0


class CurvanceConfig(Record, frozen=True, kw_only=True, tag_field="kind", tag="curvance"):
    """`[[protocols]]` with `kind = "curvance"`: Curvance market managers (health is per manager)."""

    name: Annotated[str, Meta(min_length=1)]
    market_managers: Annotated[tuple[Address, ...], Meta(min_length=1)]


# A new kind is one more Struct with its own `tag`, added to this union.
ProtocolConfig = AaveV3Config | MorphoBlueConfig | EulerV2Config | CurvanceConfig


class Watch(Record, frozen=True, kw_only=True):
    """`[[watch]]`: one account to watch, with optional per-account overrides."""

    address: Address
    label: str | None = None
    chat_id: int | None = None
    warn: HealthFactor | None = None
    critical: HealthFactor | None = None
    protocols: tuple[str, ...] | None = None  # names from [[protocols]]; None means all of them


class Config(Record, frozen=True, kw_only=True):
    """The whole configuration file."""

    chain: ChainConfig
    protocols: Annotated[tuple[ProtocolConfig, ...], Meta(min_length=1)]
    telegram: TelegramConfig | None = None
    bot: BotConfig = BotConfig()
    metrics: MetricsConfig | None = None
    storage: StorageConfig = StorageConfig()
    alerts: Thresholds = Thresholds()
    refresh: RefreshPolicy = RefreshPolicy()
    watch: tuple[Watch, ...] = ()

    def __post_init__(self) -> None:
        first_index: dict[str, int] = {}
        for i, protocol in enumerate(self.protocols):
            if (seen := first_index.setdefault(protocol.name, i)) != i:
                raise ValueError(f"protocols[{i}].name: duplicate name {show(protocol.name)} (also protocols[{seen}])")
        first_watch: dict[str, int] = {}
        for i, watch in enumerate(self.watch):
            if (seen := first_watch.setdefault(watch.address, i)) != i:
                raise ValueError(f"watch[{i}].address: duplicate address {watch.address} (also watch[{seen}])")
            for name in watch.protocols or ():
                if name not in first_index:
                    known = ", ".join(first_index)
                    raise ValueError(f"watch[{i}].protocols: unknown protocol {show(name)} (configured: {known})")
            warn = watch.warn if watch.warn is not None else self.alerts.warn
            critical = watch.critical if watch.critical is not None else self.alerts.critical
            if not critical < warn:
                warn_from = "" if watch.warn is not None else " from alerts.warn"
                critical_from = "" if watch.critical is not None else " from alerts.critical"
                raise ValueError(
                    f"watch[{i}]: critical ({critical}{critical_from}) must be below warn ({warn}{warn_from})"
                )
            if self.telegram_token() is not None and self.chat_id_for(watch) is None:
                # Caught here, not at the first alert: an alert with nowhere to go is a silent loss.
                raise ValueError(f"watch[{i}].chat_id: needed, since telegram.default_chat_id is not set")

        if self.bot.enabled and self.telegram_token() is None:
            raise ValueError("bot.enabled: the bot needs [telegram] with a token")

    def thresholds_for(self, watch: Watch) -> Thresholds:
        """The alert thresholds for `watch`: its own warn/critical where set, the `[alerts]` ones otherwise."""
        return Thresholds(
            warn=watch.warn if watch.warn is not None else self.alerts.warn,
            critical=watch.critical if watch.critical is not None else self.alerts.critical,
            hysteresis=self.alerts.hysteresis,
        )

    def protocols_for(self, watch: Watch) -> tuple[ProtocolConfig, ...]:
        """The configured protocols `watch` is watched on (all of them unless it names some)."""
        if watch.protocols is None:
            return self.protocols
        return tuple(p for p in self.protocols if p.name in watch.protocols)

    def chat_id_for(self, watch: Watch) -> int | None:
        """Where alerts for `watch` go: its own chat, else the bot's default chat, else nowhere (None)."""
        if watch.chat_id is not None:
            return watch.chat_id
        return self.telegram.default_chat_id if self.telegram is not None else None

    @property
    def bot_enabled(self) -> bool:
        """Whether `chainwatch run` answers Telegram commands: `[bot] enabled`, by default whenever a token is set."""
        has_token = self.telegram_token() is not None
        return has_token and (self.bot.enabled is None or self.bot.enabled)

    def telegram_token(self) -> Secret | None:
        """The bot token, from `token` or the variable named by `token_env`; None when there is no [telegram]."""
        if self.telegram is None:
            return None
        return self.telegram.token or self.telegram.token_env


# --- loading ------------------------------------------------------------------------------------------------------

# A real config is a few KiB, or a few MiB with tens of thousands of operator watches (~110 bytes each); anything
# larger is the wrong file, and parsing it whole would take seconds.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def load_config(path: str | Path, *, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, decode and check the TOML file at `path`; raise `ConfigError` with a one-line message if it is unusable."""
    file = str(path)
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(file, f"cannot read: larger than {MAX_CONFIG_BYTES // 1024} KiB; is it the right file?")
        text = data.decode("utf-8")
    except OSError as error:
        raise ConfigError(file, f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "cannot read: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's messages name the position ("(at line 3, column 9)") but never a value.
        raise ConfigError(file, f"invalid TOML: {error}") from None

    secrets = _secrets_in(raw, environ)
    try:
        _require_kinds(raw)
        _refuse_non_finite(raw)
        config = msgspec.convert(raw, Config, dec_hook=partial(_decode_custom, environ=environ))
    except msgspec.ValidationError as error:
        key, message = explain(str(error), raw, Config)
        raise ConfigError(file, _redact(message, secrets), key=key) from None
    # Absolute, so that the database does not move when the process changes its working directory.
    storage = msgspec.structs.replace(config.storage, path=path.absolute().parent / config.storage.path)
    if storage.url is not None and not is_postgres_url(storage.url.reveal()):  # a SQLite path given as url
        storage = msgspec.structs.replace(storage, path=path.absolute().parent / storage.url.reveal(), url=None)
    if storage.url is None and (problem := _unusable_database_path(storage.path)) is not None:
        raise ConfigError(file, f"storage.path: {problem}", key="storage.path")
    return msgspec.structs.replace(config, storage=storage)


def _unusable_database_path(path: Path) -> str | None:
    """Why SQLite could not create or open a file at `path` (None when it looks usable): caught here, at load, rather
    than as a traceback from deep inside the start."""
    if path.is_dir():
        return f"is a directory: {path}"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"{parent} is not a directory"
    return None


def _refuse_non_finite(raw: Any, at: str = "$") -> None:
    # TOML allows nan and inf; no setting here means anything with them (a NaN threshold compares false with
    # every health factor: the alert would never fire), so they are refused wherever they appear.
    if isinstance(raw, float) and not math.isfinite(raw):
        raise msgspec.ValidationError(f"must be a finite number, got {raw} - at `{at}`")
    if isinstance(raw, dict):
        for key, value in raw.items():
            _refuse_non_finite(value, f"{at}.{key}")
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            _refuse_non_finite(value, f"{at}[{i}]")


def _decode_custom(type_: type, value: Any, *, environ: Mapping[str, str]) -> Any:
    """msgspec's dec_hook: build the types above from TOML strings; messages never quote a secret."""
    if type_ in (Address, Secret, EnvSecret, Path) and not isinstance(value, str):
        raise TypeError(f"expected a string, got {toml_type(value)}")
    if type_ is Address:
        return parse_address(value)
    if type_ is Secret:
        if not value:
            raise ValueError("must not be empty")
        return Secret(value)
    if type_ is EnvSecret:
        if not value:
            raise ValueError("must name an environment variable")
        resolved = environ.get(value)
        if not resolved:
            raise ValueError(f"environment variable {value} is not set or empty")
        return EnvSecret(value, resolved)
    if type_ is Path:
        if not value:
            raise ValueError("must not be empty")
        return Path(value).expanduser()
    raise NotImplementedError(type_)


def _require_kinds(raw: dict[str, Any]) -> None:
    # With a single protocol kind msgspec would accept a missing `kind`; require it now so that adding a second
    # kind later does not break configs that happened to omit it.
    protocols = raw.get("protocols")
    if isinstance(protocols, list):
        for i, table in enumerate(protocols):
            if isinstance(table, dict) and "kind" not in table:
                raise msgspec.ValidationError(f"Object missing required field `kind` - at `$.protocols[{i}]`")


def _secrets_in(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The token values this file may lead to, so that no error message can echo one by accident."""
    candidates: list[object] = []
    storage = raw.get("storage")
    if isinstance(storage, dict) and isinstance(url := storage.get("url"), str):
        candidates.append(password_of(url))
    telegram = raw.get("telegram")
    if isinstance(telegram, dict):
        candidates.append(telegram.get("token"))
        if isinstance(name := telegram.get("token_env"), str):
            candidates.append(environ.get(name))
    return [c for c in candidates if isinstance(c, str) and c]


def _redact(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message
