"""A corpus of broken config files: each is refused with one line naming the key or the problem, never the token.

Every file carries the bot token, so that an error quoting the wrong part of the file would show it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainwatch.config import ConfigError, load_config
MAX_CONFIG_BYTES = 16 * 1024 * 1024

TOKEN = "123456:AAH-corpus-secret-token-never-shown"
PROVIDER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ACCOUNT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

# Every table chainwatch reads, each with one key set, so a case can break any of them.
FULL = f"""
[chain]
chain_id = 31337
ws_urls = ["ws://127.0.0.1:8545"]

[telegram]
token = "{TOKEN}"
default_chat_id = 42

[bot]
max_addresses_per_chat = 5

[metrics]
listen = "127.0.0.1:9464"

[refresh]
every_blocks = 5000

[alerts]
warn = 1.5
critical = 1.2

[storage]
path = "chainwatch.db"

[[protocols]]
kind = "aave_v3"
name = "devnet"
pool_addresses_provider = "{PROVIDER}"

[[watch]]
address = "{ACCOUNT}"
label = "main"
"""


def after(table: str, line: str) -> Callable[[str], str]:
    """Adds `line` as the first key of `table` (the header as written in FULL, e.g. "[[watch]]")."""
    return lambda text: text.replace(f"{table}\n", f"{table}\n{line}\n", 1)


def replaced(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


# (case, how FULL is broken, what the one line must say)
TEXT_CASES: list[tuple[str, Callable[[str], str], str]] = [
    ("unknown key in [chain]", after("[chain]", "wsurl = 1"), "unknown key chain.wsurl"),
    ("unknown key in [[protocols]]", after("[[protocols]]", "pool = 1"), "unknown key protocols[0].pool"),
    ("unknown key in [[watch]]", after("[[watch]]", "lable = 'x'"), "unknown key watch[0].lable"),
    ("unknown key in [telegram]", after("[telegram]", "tokn = 'x'"), "unknown key telegram.tokn"),
    ("unknown key in [bot]", after("[bot]", "enable = true"), "unknown key bot.enable"),
    ("unknown key in [metrics]", after("[metrics]", "port = 1"), "unknown key metrics.port"),
    ("unknown key in [refresh]", after("[refresh]", "every = 1"), "unknown key refresh.every"),
    ("unknown key in [alerts]", after("[alerts]", "warning = 1.4"), "unknown key alerts.warning"),
    ("unknown key in [storage]", after("[storage]", "file = 'x'"), "unknown key storage.file"),
    ("unknown table", lambda t: t + "\n[sotrage]\npath = 'x'\n", "unknown key sotrage"),
    ("missing [chain]", replaced("[chain]\nchain_id = 31337\n", "[chainx]\nchain_id = 31337\n"), "chain"),
    ("unclosed string", replaced('label = "main"', 'label = "main'), "invalid TOML"),
    ("unclosed table header", replaced("[bot]", "[bot"), "invalid TOML"),
    ("key without value", after("[bot]", "enabled ="), "invalid TOML"),
    ("duplicate table", lambda t: t + "\n[alerts]\nwarn = 1.6\n", "invalid TOML"),
    ("duplicate key", after("[alerts]", "warn = 1.7"), "invalid TOML"),
    ("chain_id a string", replaced("chain_id = 31337", 'chain_id = "31337"'), "chain.chain_id: expected"),
    ("ws_urls a string", replaced('ws_urls = ["ws://127.0.0.1:8545"]', 'ws_urls = "ws://x"'), "chain.ws_urls"),
    ("default_chat_id a float", replaced("default_chat_id = 42", "default_chat_id = 4.2"), "telegram.default_chat_id"),
    ("bot a list", replaced("[bot]\nmax_addresses_per_chat = 5", "bot = [1]"), "bot"),
    ("watch a table, not a list", replaced("[[watch]]", "[watch]"), "watch"),
    ("protocols kind unknown", replaced('kind = "aave_v3"', 'kind = "compound"'), "protocols[0].kind"),
    ("NaN warn", replaced("warn = 1.5", "warn = nan"), "alerts.warn"),
    ("NaN critical", replaced("critical = 1.2", "critical = nan"), "alerts.critical"),
    ("infinite warn", replaced("warn = 1.5", "warn = inf"), "alerts.warn"),
    ("NaN per-watch warn", after("[[watch]]", "warn = nan"), "watch[0].warn"),
    ("NaN send rate", after("[telegram]", "messages_per_second = nan"), "telegram.messages_per_second"),
    ("infinite send rate", after("[telegram]", "messages_per_second = inf"), "telegram.messages_per_second: must be a finite"),
    ("NaN in a list", after("[refresh]", "bands = [{ below = nan, every_blocks = 1 }]"), "refresh.bands[0].below"),
    ("NaN stall seconds", after("[chain]", "stall_seconds = nan"), "chain.stall_seconds"),
    ("negative refresh interval", replaced("every_blocks = 5000", "every_blocks = -1"), "refresh.every_blocks"),
    ("zero concurrent sends", after("[telegram]", "concurrent_sends = 0"), "telegram.concurrent_sends"),
    ("storage path empty", replaced('path = "chainwatch.db"', 'path = ""'), "storage.path"),
    ("NUL in a string", replaced('label = "main"', 'label = "ma\x00in"'), "invalid TOML"),
]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "config.toml"


def refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def assert_one_clean_line(error: ConfigError, expected: str) -> None:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text, text
    assert expected in text, text
    assert TOKEN not in text and TOKEN.partition(":")[2] not in text, text


class TestCorpus:
    def test_the_unbroken_file_loads(self, config_file: Path) -> None:
        """The base of the corpus is valid, so each case fails for its own break alone."""
        config_file.write_text(FULL)
        assert load_config(config_file).telegram is not None

    @pytest.mark.parametrize(("case", "edit", "expected"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
    def test_broken_text(self, config_file: Path, case: str, edit: Callable[[str], str], expected: str) -> None:
        """Each broken file is refused with one line that names the key or the problem and not the token."""
        config_file.write_text(edit(FULL))
        assert_one_clean_line(refused(config_file), expected)

    @pytest.mark.parametrize(
        "garbage",
        [bytes(range(256)) * 4, b"\xff\xfe" + FULL.encode("utf-16-le"), b"\x00" * 100, b"\x7fELF\x02\x01\x01" + bytes(500)],
        ids=["all bytes", "utf-16", "zeros", "an executable"],
    )
    def test_binary_garbage(self, config_file: Path, garbage: bytes) -> None:
        """A binary file (with the token inside) is refused as unreadable text or invalid TOML."""
        config_file.write_bytes(garbage + TOKEN.encode())
        error = refused(config_file)
        assert_one_clean_line(error, "")
        assert "not UTF-8" in str(error) or "invalid TOML" in str(error)

    def test_a_huge_file_is_refused_by_its_size_quickly(self, config_file: Path) -> None:
        """A 50 MB file is refused by its size, unparsed: valid TOML (a good file padded with comments), it could
        only be refused for that."""
        with config_file.open("w") as out:
            out.write(FULL)
            for i in range(50 * 1024 * 1024 // 64):
                out.write(f"# {TOKEN} padding line {i:20d}\n")
        assert_one_clean_line(refused(config_file), f"larger than {MAX_CONFIG_BYTES // 1024} KiB")

    def test_a_directory_as_the_config(self, tmp_path: Path) -> None:
        """Pointing --config at a directory is a one-line read error."""
        assert_one_clean_line(refused(tmp_path), "cannot read")

    def test_a_directory_as_the_storage_path(self, config_file: Path) -> None:
        """storage.path naming an existing directory is refused at load, naming the key."""
        (config_file.parent / "db-dir").mkdir()
        config_file.write_text(FULL.replace('path = "chainwatch.db"', 'path = "db-dir"'))
        assert_one_clean_line(refused(config_file), "storage.path: is a directory")

    def test_storage_under_a_regular_file(self, config_file: Path) -> None:
        """storage.path inside something that is a file, not a directory, is refused at load, naming the key."""
        (config_file.parent / "plain").write_text("")
        config_file.write_text(FULL.replace('path = "chainwatch.db"', 'path = "plain/chainwatch.db"'))
        assert_one_clean_line(refused(config_file), "storage.path: ")
