"""Tests for chainwatch.config: decoding, defaults, derived values, one-line errors and secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainwatch.config import (
    MULTICALL3,
    AaveV3Config,
    ConfigError,
    EnvSecret,
    Secret,
    Thresholds,
    load_config,
    parse_address,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:AAH-very-secret-token"
PROVIDER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ACCOUNT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BAD_CHECKSUM = OTHER_ACCOUNT.replace("Fd6", "fD6")  # mixed case, one letter's case flipped

MINIMAL = f"""
[chain]
chain_id = 31337
ws_urls = ["ws://127.0.0.1:8545"]

[[protocols]]
kind = "aave_v3"
name = "devnet"
pool_addresses_provider = "{PROVIDER}"
"""


@pytest.fixture
def write(tmp_path: Path):
    """Write TOML text to config.toml in a fresh directory and return its path."""

    def _write(text: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(text)
        return path

    return _write


def _watch(address: str = ACCOUNT, extra: str = "") -> str:
    return f'\n[[watch]]\naddress = "{address}"\n{extra}\n'


class TestLoadConfig:
    def test_example_config_loads(self) -> None:
        """config.example.toml at the repository root is valid, given its token variable."""
        config = load_config(REPO_ROOT / "config.example.toml", environ={"CHAINWATCH_TELEGRAM_TOKEN": TOKEN})
        assert config.chain.chain_id == 31337
        assert config.telegram_token() == EnvSecret("CHAINWATCH_TELEGRAM_TOKEN", TOKEN)
        assert [p.name for p in config.protocols] == ["devnet"]

    def test_defaults(self, write) -> None:
        """A minimal file gets every documented default."""
        config = load_config(write(MINIMAL), environ={})
        chain = config.chain
        assert (chain.multicall3, chain.max_log_range, config.refresh.every_blocks) == (MULTICALL3, 100, 1500)
        assert config.refresh.screen_margin == 0.02
        assert (chain.calls_per_batch, chain.read_concurrency, chain.http_urls) == (200, 4, None)
        assert chain.gas_per_call == 20_000_000
        assert config.alerts == Thresholds(warn=1.5, critical=1.2, hysteresis=0.02)
        assert config.telegram is None and config.telegram_token() is None
        assert config.watch == ()

    def test_telegram_defaults(self, write) -> None:
        """A [telegram] table with only a token gets the documented defaults."""
        config = load_config(write(MINIMAL + f'[telegram]\ntoken = "{TOKEN}"\n'), environ={})
        telegram = config.telegram
        assert telegram is not None
        assert telegram.api_base == "https://api.telegram.org"
        assert (telegram.default_chat_id, telegram.messages_per_second, telegram.per_chat_interval) == (None, 25, 1.0)
        assert config.telegram_token() == Secret(TOKEN)

    def test_multicall3_default_is_checksummed(self) -> None:
        """The default Multicall3 address is already in EIP-55 form."""
        assert parse_address(MULTICALL3.lower()) == MULTICALL3

    def test_token_from_environment(self, write) -> None:
        """token_env names a variable whose value, read at load time, is the token."""
        config = load_config(write(MINIMAL + '[telegram]\ntoken_env = "BOT_TOKEN"\n'), environ={"BOT_TOKEN": TOKEN})
        token = config.telegram_token()
        assert isinstance(token, EnvSecret) and token.name == "BOT_TOKEN" and token.reveal() == TOKEN

    def test_environ_defaults_to_process_environment(self, write, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an explicit environ, os.environ is used."""
        monkeypatch.setenv("BOT_TOKEN", TOKEN)
        config = load_config(write(MINIMAL + '[telegram]\ntoken_env = "BOT_TOKEN"\n'))
        assert config.telegram_token() is not None and config.telegram_token().reveal() == TOKEN

    def test_config_is_frozen(self, write) -> None:
        """The decoded tree cannot be changed after loading."""
        config = load_config(write(MINIMAL), environ={})
        with pytest.raises(AttributeError):
            config.chain.chain_id = 1  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("ws_urls", "http_urls", "expected"),
        [
            ('["ws://a:8545", "wss://b.example/v2/key"]', None, ("http://a:8545", "https://b.example/v2/key")),
            ('["wss://a.example/ws"]', '["https://a.example/rpc"]', ("https://a.example/rpc",)),
        ],
        ids=["derived", "explicit"],
    )
    def test_rpc_http_urls(self, write, ws_urls: str, http_urls: str | None, expected: tuple[str, ...]) -> None:
        """HTTP URLs are http_urls when given, else the ws_urls with the scheme swapped."""
        text = MINIMAL.replace('ws_urls = ["ws://127.0.0.1:8545"]', f"ws_urls = {ws_urls}")
        if http_urls is not None:
            text = text.replace("[[protocols]]", f"http_urls = {http_urls}\n\n[[protocols]]")
        assert load_config(write(text), environ={}).chain.rpc_http_urls == expected

    def test_http_urls_mix_strings_and_tables(self, write) -> None:
        """A plain URL takes the default budget; a table sets its own budget and timeout."""
        tables = '["https://a.example/k1", { url = "https://b.example/k2", requests_per_second = 3, timeout_seconds = 2 }]'
        text = MINIMAL.replace("[[protocols]]", f"http_urls = {tables}\n\n[[protocols]]")
        first, second = load_config(write(text), environ={}).chain.rpc_endpoints
        assert (first.url, first.requests_per_second, first.timeout_seconds) == ("https://a.example/k1", 10.0, 10.0)
        assert (second.url, second.requests_per_second, second.timeout_seconds) == ("https://b.example/k2", 3.0, 2.0)

    @pytest.mark.parametrize(
        ("entry", "expected"),
        [
            ('{ url = "ftp://a.example/SECRETKEY" }', "chain.http_urls[0].url: expected an http:// or https:// URL"),
            ('{ url = "https://a.example/SECRETKEY", requests_per_second = 0 }',
             "chain.http_urls[0].requests_per_second: expected a number > 0.0, got 0"),
            ('{ url = "https://a.example/SECRETKEY", rps = 5 }', "unknown key chain.http_urls[0].rps"),
        ],
        ids=["bad-url", "zero-budget", "unknown-key"],
    )  # fmt: skip
    def test_bad_http_url_table_is_one_line_without_the_url(self, write, entry: str, expected: str) -> None:
        """A wrong http_urls table is one line naming its key, and never the URL (it may hold an API key)."""
        text = MINIMAL.replace("[[protocols]]", f"http_urls = [{entry}]\n\n[[protocols]]")
        with pytest.raises(ConfigError) as raised:
            load_config(write(text), environ={})
        message = str(raised.value)
        assert expected in message and "\n" not in message and "SECRETKEY" not in message

    @pytest.mark.parametrize("written", [ACCOUNT.lower(), "0x" + ACCOUNT[2:].upper(), ACCOUNT])
    def test_addresses_are_stored_checksummed(self, write, written: str) -> None:
        """Lowercase, uppercase and correctly checksummed addresses all decode to the checksum form."""
        config = load_config(write(MINIMAL + _watch(written)), environ={})
        assert config.watch[0].address == ACCOUNT

    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            ("state.db", "{dir}/state.db"),
            ("data/state.db", "{dir}/data/state.db"),
            ("/var/lib/cw.db", "/var/lib/cw.db"),
        ],
    )
    def test_storage_path_is_relative_to_config_file(self, write, written: str, expected: str) -> None:
        """A relative storage.path is taken from the config file's directory; an absolute one is kept."""
        path = write(MINIMAL + f'[storage]\npath = "{written}"\n')
        config = load_config(path, environ={})
        assert config.storage.path == Path(expected.format(dir=path.parent))

    def test_default_storage_path_is_beside_config_file(self, write) -> None:
        """Without [storage], the database is chainwatch.db next to the config file."""
        path = write(MINIMAL)
        assert load_config(path, environ={}).storage.path == path.parent / "chainwatch.db"

    def test_storage_url_picks_postgres_and_never_shows_its_password(self, write) -> None:
        """A postgresql:// url is the store's target; the config's repr does not carry its password."""
        url = "postgresql://watcher:hunter2@db.internal:5432/chainwatch"
        config = load_config(write(MINIMAL + f'[storage]\nurl = "{url}"\n'), environ={})
        assert config.storage.target == url
        assert "hunter2" not in repr(config)

    def test_storage_url_that_is_a_path_is_a_sqlite_file_beside_the_config(self, write) -> None:
        """A url that is not postgresql:// is a SQLite path, relative to the config file like path."""
        path = write(MINIMAL + '[storage]\nurl = "data/state.db"\n')
        assert load_config(path, environ={}).storage.target == path.parent / "data" / "state.db"

    def test_storage_url_password_not_in_config_errors(self, write) -> None:
        """A config error elsewhere in a file with a postgres password does not echo the password."""
        url = "postgresql://watcher:hunter2@db/chainwatch"
        with pytest.raises(ConfigError) as caught:
            load_config(write(MINIMAL + f'[storage]\nurl = "{url}"\npath = 5\n'), environ={})
        assert "hunter2" not in str(caught.value) and "storage" in str(caught.value)

    def test_protocol_is_tagged_by_kind(self, write) -> None:
        """A [[protocols]] table decodes to the struct for its kind."""
        (protocol,) = load_config(write(MINIMAL), environ={}).protocols
        assert protocol == AaveV3Config(name="devnet", pool_addresses_provider=PROVIDER)


class TestPerWatch:
    def test_thresholds_for_merges_overrides(self, write) -> None:
        """A watch's own warn/critical win; the rest comes from [alerts]."""
        text = MINIMAL + "[alerts]\nwarn = 1.6\nhysteresis = 0.05\n" + _watch(extra="critical = 1.3")
        config = load_config(write(text), environ={})
        assert config.thresholds_for(config.watch[0]) == Thresholds(warn=1.6, critical=1.3, hysteresis=0.05)

    def test_protocols_for(self, write) -> None:
        """A watch without protocols is on all of them; one with a list only on those."""
        second = f'[[protocols]]\nkind = "aave_v3"\nname = "other"\npool_addresses_provider = "{OTHER_ACCOUNT}"\n'
        text = MINIMAL + second + _watch() + _watch(OTHER_ACCOUNT, 'protocols = ["other"]')
        config = load_config(write(text), environ={})
        assert [p.name for p in config.protocols_for(config.watch[0])] == ["devnet", "other"]
        assert [p.name for p in config.protocols_for(config.watch[1])] == ["other"]

    def test_chat_id_for(self, write) -> None:
        """A watch's chat_id wins over telegram.default_chat_id."""
        telegram = f'[telegram]\ntoken = "{TOKEN}"\ndefault_chat_id = 7\n'
        text = MINIMAL + telegram + _watch() + _watch(OTHER_ACCOUNT, "chat_id = 9")
        config = load_config(write(text), environ={})
        assert [config.chat_id_for(w) for w in config.watch] == [7, 9]

    def test_chat_id_for_without_telegram(self, write) -> None:
        """Without [telegram] and without its own chat_id a watch has nowhere to send."""
        config = load_config(write(MINIMAL + _watch()), environ={})
        assert config.chat_id_for(config.watch[0]) is None


# (case id, config text, environ, expected message after "<path>: ")
ERRORS = [
    (
        "negative screen margin",
        MINIMAL + "[refresh]\nscreen_margin = -0.01\n",
        {},
        "refresh.screen_margin: expected a number >= 0.0, got -0.01",
    ),
    (
        "screen margin as text",
        MINIMAL + '[refresh]\nscreen_margin = "2%"\n',
        {},
        "refresh.screen_margin: expected a number, got str",
    ),
    (
        "url with a fragment, not quoted back",
        MINIMAL.replace('ws_urls = ["ws://127.0.0.1:8545"]', 'ws_urls = ["wss://rpc.example/v2/SECRETKEY#main"]'),
        {},
        "chain.ws_urls[0]: expected a ws:// or wss:// URL (scheme, host, optional port and path; no fragment)",
    ),
    (
        "watch with nowhere to send",
        MINIMAL + f'[telegram]\ntoken = "{TOKEN}"\n' + _watch(),
        {},
        "watch[0].chat_id: needed, since telegram.default_chat_id is not set",
    ),
    (
        "unknown key",
        MINIMAL.replace("chain_id = 31337", "chain_id = 31337\nwsurl = 1"),
        {},
        "unknown key chain.wsurl",
    ),
    (
        "missing key",
        MINIMAL.replace("chain_id = 31337", ""),
        {},
        "missing required key chain.chain_id",
    ),
    (
        "wrong type",
        MINIMAL.replace('ws_urls = ["ws://127.0.0.1:8545"]', 'ws_urls = "ws://127.0.0.1:8545"'),
        {},
        "chain.ws_urls: expected a list of strings, got str",
    ),
    (
        "wrong type in list entry",
        MINIMAL + _watch(extra='chat_id = "me"'),
        {},
        "watch[0].chat_id: expected an integer, got str",
    ),
    (
        "list instead of table array",
        MINIMAL + f'[watch]\naddress = "{ACCOUNT}"\n',
        {},
        "watch: expected a list of tables, got table",
    ),
    (
        "empty list",
        MINIMAL.replace('ws_urls = ["ws://127.0.0.1:8545"]', "ws_urls = []"),
        {},
        "chain.ws_urls: must not be empty",
    ),
    (
        "not a websocket URL",
        MINIMAL.replace('ws_urls = ["ws://127.0.0.1:8545"]', 'ws_urls = ["http://127.0.0.1:8545"]'),
        {},
        "chain.ws_urls[0]: expected a ws:// or wss:// URL (scheme, host, optional port and path; no fragment)",
    ),
    (
        "out of range",
        MINIMAL.replace("chain_id = 31337", "chain_id = 0"),
        {},
        "chain.chain_id: expected an integer >= 1, got 0",
    ),
    (
        "malformed address",
        MINIMAL + _watch("0x7099797"),
        {},
        'watch[0].address: expected a 0x-prefixed address of 40 hex digits, got "0x7099797"',
    ),
    (
        "non-hex address",
        MINIMAL + _watch("0x" + "g" * 40),
        {},
        f'watch[0].address: expected a 0x-prefixed address of 40 hex digits, got "0x{"g" * 40}"',
    ),
    (
        "bad checksum",
        MINIMAL + _watch() + _watch(BAD_CHECKSUM),
        {},
        f'watch[1].address: bad EIP-55 checksum "{BAD_CHECKSUM}"',
    ),
    (
        "thresholds out of order",
        MINIMAL + "[alerts]\nwarn = 1.5\ncritical = 1.6\n",
        {},
        "alerts: critical (1.6) must be below warn (1.5)",
    ),
    (
        "threshold at or below 1",
        MINIMAL + "[alerts]\ncritical = 1.0\n",
        {},
        "alerts.critical: expected a number > 1.0, got 1.0",
    ),
    (
        "watch thresholds out of order",
        MINIMAL + _watch() + _watch(OTHER_ACCOUNT, "critical = 1.6"),
        {},
        "watch[1]: critical (1.6) must be below warn (1.5 from alerts.warn)",
    ),
    (
        "unknown protocol kind",
        MINIMAL.replace('kind = "aave_v3"', 'kind = "compound"'),
        {},
        'protocols[0].kind: unknown protocol kind "compound" (known: aave_v3, curvance, euler_v2, morpho_blue)',
    ),
    (
        "missing protocol kind",
        MINIMAL.replace('kind = "aave_v3"', ""),
        {},
        "missing required key protocols[0].kind",
    ),
    (
        "duplicate protocol names",
        MINIMAL + MINIMAL[MINIMAL.index("[[protocols]]") :],
        {},
        'protocols[1].name: duplicate name "devnet" (also protocols[0])',
    ),
    (
        "duplicate watch addresses",
        MINIMAL + _watch() + _watch(ACCOUNT.lower()),
        {},
        f"watch[1].address: duplicate address {ACCOUNT} (also watch[0])",
    ),
    (
        "unknown protocol in watch",
        MINIMAL + _watch(extra='protocols = ["neverland"]'),
        {},
        'watch[0].protocols: unknown protocol "neverland" (configured: devnet)',
    ),
    (
        "token and token_env",
        MINIMAL + f'[telegram]\ntoken = "{TOKEN}"\ntoken_env = "BOT_TOKEN"\n',
        {"BOT_TOKEN": TOKEN},
        "telegram: set token or token_env, not both",
    ),
    (
        "neither token nor token_env",
        MINIMAL + "[telegram]\ndefault_chat_id = 1\n",
        {},
        "telegram: set token or token_env",
    ),
    (
        "missing env var",
        MINIMAL + '[telegram]\ntoken_env = "BOT_TOKEN"\n',
        {},
        "telegram.token_env: environment variable BOT_TOKEN is not set or empty",
    ),
    (
        "empty env var",
        MINIMAL + '[telegram]\ntoken_env = "BOT_TOKEN"\n',
        {"BOT_TOKEN": ""},
        "telegram.token_env: environment variable BOT_TOKEN is not set or empty",
    ),
    (
        "api_base not http",
        MINIMAL + f'[telegram]\ntoken = "{TOKEN}"\napi_base = "ftp://example.org"\n',
        {},
        'telegram.api_base: expected an http:// or https:// URL, got "ftp://example.org"',
    ),
    (
        "TOML syntax error",
        MINIMAL + "[alerts]\nwarn = \n",
        {},
        "invalid TOML: Invalid value (at line 11, column 8)",
    ),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "environ", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
    def test_one_line_message(self, write, text: str, environ: dict[str, str], expected: str) -> None:
        """Each problem is one line: the file, the key with its table and index, and what is wrong."""
        path = write(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ=environ)
        assert str(caught.value) == f"{path}: {expected}"
        assert "\n" not in str(caught.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that does not exist is named with the reason."""
        path = tmp_path / "absent.toml"
        with pytest.raises(ConfigError, match=r"absent\.toml: cannot read: No such file or directory$"):
            load_config(path, environ={})

    def test_key_attribute(self, write) -> None:
        """The error also carries the offending key for programs."""
        with pytest.raises(ConfigError) as caught:
            load_config(write(MINIMAL + _watch("0x1")), environ={})
        assert caught.value.key == "watch[0].address"

    def test_no_chained_cause(self, write) -> None:
        """The msgspec error is not chained, so a traceback shows the one message only."""
        with pytest.raises(ConfigError) as caught:
            load_config(write(MINIMAL.replace("chain_id = 31337", "chain_id = 0")), environ={})
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


class TestSecrets:
    def test_secret_hides_its_value(self) -> None:
        """Secret's repr and str are fixed; reveal() returns the value."""
        secret = Secret(TOKEN)
        assert repr(secret) == str(secret) == "Secret('***')"
        assert secret.reveal() == TOKEN

    @pytest.mark.parametrize(
        ("table", "environ"),
        [(f'token = "{TOKEN}"', {}), ('token_env = "BOT_TOKEN"', {"BOT_TOKEN": TOKEN})],
        ids=["token", "token_env"],
    )
    def test_token_not_in_repr(self, write, table: str, environ: dict[str, str]) -> None:
        """Neither repr nor str of the loaded config shows the token."""
        config = load_config(write(MINIMAL + f"[telegram]\n{table}\n"), environ=environ)
        assert TOKEN not in repr(config) and TOKEN not in str(config)
        assert TOKEN not in repr(config.telegram) and TOKEN not in repr(config.telegram_token())

    @pytest.mark.parametrize(
        "telegram",
        [
            f'token = "{TOKEN}"\ntoken_env = "BOT_TOKEN"',
            f'token = "{TOKEN}"\napi_base = "{TOKEN}"',
            f'token = "{TOKEN}"\ndefault_chat_id = "{TOKEN}"',
            f'token = "{TOKEN}"\ntokn = "{TOKEN}"',
            'token_env = "BOT_TOKEN"\napi_base = "https://x.example/"\nmessages_per_second = 0',
            "token = 12345",
        ],
        ids=["both set", "token as api_base", "token as chat id", "misspelt key", "env token elsewhere", "wrong type"],
    )
    def test_token_not_in_errors(self, write, telegram: str) -> None:
        """No error message, even one about the token, contains the token."""
        with pytest.raises(ConfigError) as caught:
            load_config(write(MINIMAL + f"[telegram]\n{telegram}\n"), environ={"BOT_TOKEN": TOKEN})
        assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
        assert "telegram" in str(caught.value)


class TestMonadLimits:
    def test_defaults_fit_monads_public_endpoints(self, write) -> None:
        """eth_getLogs ranges of at most 100 blocks and aggregate3 chunks far under the 200M eth_call gas cap."""
        chain = load_config(write(MINIMAL), environ={}).chain
        assert chain.max_log_range <= 100 and chain.gas_per_call <= 200_000_000 // 4

    def test_reader_chunks_by_the_configured_gas(self, write) -> None:
        """`gas_per_call` reaches the reader: calls of 6M gas go three to an eth_call under 20M."""
        from chainwatch.app import _reader
        from chainwatch.multicall import Call, chunked

        config = load_config(write(MINIMAL), environ={})
        reader = _reader(config, rpc=None)  # type: ignore[arg-type]
        calls = [Call(target=MULTICALL3, data=b"", gas=6_000_000)] * 7
        sizes = [len(c) for c in chunked(calls, max_calls=reader.limit.calls, max_gas=reader._max_gas)]
        assert sizes == [3, 3, 1]

    def test_commented_monad_example_loads(self, tmp_path) -> None:
        """The Monad mainnet example, uncommented in place of the devnet tables, is a valid config for chain 143."""
        text = (REPO_ROOT / "config.example.toml").read_text()
        monad = text.split("# Monad mainnet (chain 143)", 1)[1]
        monad = monad[monad.index("# [chain]"):]  # past the prose that introduces it
        lines = [line[2:] if line.startswith("# ") else "" for line in monad.splitlines()]
        body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        body = body.replace('"<your account>"', '"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"')
        path = tmp_path / "monad.toml"
        path.write_text(body)
        config = load_config(path, environ={})
        assert config.chain.chain_id == 143 and config.chain.max_log_range <= 100
        assert [type(p).__name__ for p in config.protocols] == ["AaveV3Config", "MorphoBlueConfig", "EulerV2Config",
                                                              "CurvanceConfig"]
