"""chainwatch's configuration: one frozen tree decoded from a TOML file by `load_config`.

Every check lives on the types below (constraints with `Meta`, cross-field rules in `__post_init__`); `load_config`
only reads the file, decodes it once and turns any failure into a one-line `ConfigError`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi
from eth_utils import to_checksum_address
from msgspec import Meta

from chainwatch.alerts.state import Thresholds
from chainwatch.refresh import RefreshPolicy
from chainwatch.model import Record

__all__ = [
    "AaveV3Config",
    "CurvanceConfig",
    "EulerV2Config",
    "MorphoBlueConfig",
    "Address",
    "ChainConfig",
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
        raise ValueError(f"expected a 0x-prefixed address of 40 hex digits, got {_show(text)}")
    checksummed = to_checksum_address(text)
    digits = text[2:]
    # Mixed case is a checksum claim (EIP-55); a wrong one usually means a typo, so it must not be fixed silently.
    if digits != digits.lower() and digits != digits.upper() and text != checksummed:
        raise ValueError(f"bad EIP-55 checksum {_show(text)}")
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


class ChainConfig(Record, frozen=True, kw_only=True):
    """`[chain]`: which chain to watch and how hard to read it."""

    chain_id: Positive
    ws_urls: Annotated[tuple[WsUrl, ...], Meta(min_length=1)]  # the first is primary, the rest are fallbacks
    http_urls: Annotated[tuple[HttpUrl, ...], Meta(min_length=1)] | None = None
    multicall3: Address = MULTICALL3
    max_log_range: Positive = 100
    calls_per_batch: Positive = 200
    read_concurrency: Positive = 4
    # A WebSocket that sends nothing (not even a head) for this long is treated as dead and reopened.
    stall_seconds: Annotated[float, Meta(gt=0)] = 60.0

    @property
    def rpc_http_urls(self) -> tuple[str, ...]:
        """`http_urls`, or when absent the websocket URLs with their scheme swapped (ws->http, wss->https)."""
        if self.http_urls is not None:
            return self.http_urls
        return tuple("http" + url.removeprefix("ws") for url in self.ws_urls)


class TelegramConfig(Record, frozen=True, kw_only=True):
    """`[telegram]`: the bot's token (inline or from the environment) and how fast it may send."""

    token: Secret | None = None
    token_env: EnvSecret | None = None  # named in the file as the variable's name; resolved at load time
    api_base: HttpUrl = "https://api.telegram.org"
    default_chat_id: int | None = None
    # Telegram's documented limits: about 30 messages/s overall and 1/s per chat; stay a little under.
    messages_per_second: Annotated[float, Meta(gt=0)] = 25.0
    per_chat_interval: Annotated[float, Meta(ge=0)] = 1.0

    def __post_init__(self) -> None:
        if self.token is not None and self.token_env is not None:
            raise ValueError("set token or token_env, not both")
        if self.token is None and self.token_env is None:
            raise ValueError("set token or token_env")


class StorageConfig(Record, frozen=True, kw_only=True):
    """`[storage]`: where the SQLite file lives (relative paths are relative to the config file)."""

    path: Path = Path("chainwatch.db")


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
    storage: StorageConfig = StorageConfig()
    alerts: Thresholds = Thresholds()
    refresh: RefreshPolicy = RefreshPolicy()
    watch: tuple[Watch, ...] = ()

    def __post_init__(self) -> None:
        first_index: dict[str, int] = {}
        for i, protocol in enumerate(self.protocols):
            if (seen := first_index.setdefault(protocol.name, i)) != i:
                raise ValueError(f"protocols[{i}].name: duplicate name {_show(protocol.name)} (also protocols[{seen}])")
        first_watch: dict[str, int] = {}
        for i, watch in enumerate(self.watch):
            if (seen := first_watch.setdefault(watch.address, i)) != i:
                raise ValueError(f"watch[{i}].address: duplicate address {watch.address} (also watch[{seen}])")
            for name in watch.protocols or ():
                if name not in first_index:
                    known = ", ".join(first_index)
                    raise ValueError(f"watch[{i}].protocols: unknown protocol {_show(name)} (configured: {known})")
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

    def telegram_token(self) -> Secret | None:
        """The bot token, from `token` or the variable named by `token_env`; None when there is no [telegram]."""
        if self.telegram is None:
            return None
        return self.telegram.token or self.telegram.token_env


# --- loading ------------------------------------------------------------------------------------------------------


def load_config(path: str | Path, *, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, decode and check the TOML file at `path`; raise `ConfigError` with a one-line message if it is unusable."""
    file = str(path)
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
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
        config = msgspec.convert(raw, Config, dec_hook=partial(_decode_custom, environ=environ))
    except msgspec.ValidationError as error:
        key, message = _explain(str(error), raw)
        raise ConfigError(file, _redact(message, secrets), key=key) from None
    # Absolute, so that the database does not move when the process changes its working directory.
    storage = msgspec.structs.replace(config.storage, path=path.absolute().parent / config.storage.path)
    return msgspec.structs.replace(config, storage=storage)


def _decode_custom(type_: type, value: Any, *, environ: Mapping[str, str]) -> Any:
    """msgspec's dec_hook: build the types above from TOML strings; messages never quote a secret."""
    if type_ in (Address, Secret, EnvSecret, Path) and not isinstance(value, str):
        raise TypeError(f"expected a string, got {_toml_type(value)}")
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
    telegram = raw.get("telegram")
    if not isinstance(telegram, dict):
        return []
    candidates = [telegram.get("token")]
    if isinstance(name := telegram.get("token_env"), str):
        candidates.append(environ.get(name))
    return [c for c in candidates if isinstance(c, str) and c]


def _redact(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


# --- msgspec errors as one line naming the key ---------------------------------------------------------------------

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_WRONG_TYPE = re.compile(r"^Expected `(?P<expected>[^`]*)`, got `(?P<got>[^`]*)`$")
_CONSTRAINT = re.compile(r"^Expected `(?P<expected>[^`]*)` (?P<rule>.+)$")
_INVALID = re.compile(r"^Invalid value (?P<value>.*)$")
_NAMED = re.compile(r"^(?P<key>[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): ")
_MSGSPEC_TYPE_NAMES = {"array": "list", "object": "table", "null": "nothing"}
_MSGSPEC_DESCRIPTIONS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
}


def _explain(error: str, raw: dict[str, Any]) -> tuple[str | None, str]:
    """(key, message) for a msgspec.ValidationError's text, e.g. `$.watch[0].chat_id` -> `watch[0].chat_id`."""
    found = _AT.match(error)
    assert found is not None  # the pattern matches any text
    what, path = found["what"], found["path"] or ""
    parts: list[str | int] = [name if name else int(index) for name, index in _PATH_PART.findall(path)]
    key = _key(parts)

    if m := _UNKNOWN.match(what):
        full = _key([*parts, m["name"]])
        return full, f"unknown key {full}"
    if m := _MISSING.match(what):
        full = _key([*parts, m["name"]])
        return full, f"missing required key {full}"

    type_ = _type_at(parts)
    if m := _WRONG_TYPE.match(what):
        expected = _describe(type_) if type_ is not None else _MSGSPEC_DESCRIPTIONS.get(m["expected"], m["expected"])
        got = _MSGSPEC_TYPE_NAMES.get(m["got"], m["got"])
        return key, f"{key}: expected {expected}, got {got}"
    if m := _CONSTRAINT.match(what):
        value = _value_at(raw, parts)
        if m["rule"] == "of length >= 1":
            return key, f"{key}: must not be empty"
        if m["rule"].startswith("matching regex") and type_ is not None:
            if "urls" in key:
                # An endpoint URL may carry an API key: say what is wrong without quoting it.
                return key, f"{key}: expected {_describe(type_)} (scheme, host, optional port and path; no fragment)"
            return key, f"{key}: expected {_describe(type_)}, got {_show(value)}"
        expected = _describe(type_) if type_ is not None else _MSGSPEC_DESCRIPTIONS.get(m["expected"], m["expected"])
        return key, f"{key}: expected {expected} {m['rule']}, got {_show(value)}"
    if (m := _INVALID.match(what)) and parts and (tags := _tags_at(parts[:-1], parts[-1])):
        noun = str(parts[0]).removesuffix("s")
        value = _value_at(raw, parts)
        return key, f"{key}: unknown {noun} {parts[-1]} {_show(value)} (known: {', '.join(tags)})"
    # Our own words, from a dec_hook or a __post_init__: "problem", or at the root (Config) "key: problem".
    if key:
        return key, f"{key}: {what}"
    named = _NAMED.match(what)
    return (named["key"] if named else None), what


def _key(parts: list[str | int]) -> str:
    key = ""
    for part in parts:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


@cache
def _config_type() -> mi.Type:
    return mi.type_info(Config)


def _strip(type_: mi.Type) -> mi.Type:
    """`type_` without its metadata and optional-ness, to walk into it."""
    while True:
        if isinstance(type_, mi.Metadata):
            type_ = type_.type
            continue
        if isinstance(type_, mi.UnionType):
            options = [t for t in type_.types if not isinstance(t, mi.NoneType)]
            if len(options) == 1:
                type_ = options[0]
                continue
        return type_


def _structs(type_: mi.Type) -> list[mi.StructType]:
    type_ = _strip(type_)
    if isinstance(type_, mi.UnionType):
        return [t for t in type_.types if isinstance(t, mi.StructType)]
    return [type_] if isinstance(type_, mi.StructType) else []


def _type_at(parts: list[str | int]) -> mi.Type | None:
    type_: mi.Type | None = _config_type()
    for part in parts:
        if type_ is None:
            return None
        if isinstance(part, int):
            inner = _strip(type_)
            type_ = inner.item_type if isinstance(inner, (mi.ListType, mi.VarTupleType)) else None
        else:
            type_ = next((f.type for s in _structs(type_) for f in s.fields if f.encode_name == part), None)
    return type_


def _tags_at(parts: list[str | int], field: str | int) -> list[str]:
    """The tags of the tagged union at `parts` if `field` is its tag field, else []."""
    structs = _structs(_type_at(parts)) if _type_at(parts) is not None else []
    return sorted(str(s.tag) for s in structs if s.tag_field == field)


def _describe(type_: mi.Type) -> str:
    """How a type reads in an error: `tuple[str, ...]` -> "a list of strings"."""
    match type_:
        case mi.Metadata(extra_json_schema={"description": str(description)}):
            return description
        case mi.Metadata():
            return _describe(type_.type)
        case mi.UnionType():
            options = [t for t in type_.types if not isinstance(t, mi.NoneType)]
            if all(isinstance(t, mi.StructType) for t in options):
                return "a table"
            return " or ".join(_describe(t) for t in options)
        case mi.BoolType():
            return "true or false"
        case mi.IntType():
            return "an integer"
        case mi.FloatType():
            return "a number"
        case mi.StrType() | mi.CustomType():  # every custom type here decodes from a string
            return "a string"
        case mi.ListType() | mi.VarTupleType():
            # The container is what is wrong here, so name the items plainly ("strings", not "ws:// URLs").
            return "a list of " + _plural(_describe(_strip(type_.item_type)))
        case mi.StructType():
            return "a table"
        case _:
            return "a valid value"


def _plural(description: str) -> str:
    for article in ("a ", "an "):
        if description.startswith(article):
            return description.removeprefix(article) + "s"
    return f"values that are {description}"


_MISSING_VALUE = object()


def _value_at(raw: Any, parts: list[str | int]) -> Any:
    for part in parts:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING_VALUE
    return raw


def _show(value: Any) -> str:
    """A value as it would be written in TOML, on one line."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return "?" if value is _MISSING_VALUE else _toml_type(value)


def _toml_type(value: Any) -> str:
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
