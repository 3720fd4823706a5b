"""Tests for chainwatch.logs: the redaction processor and the configured structlog + stdlib pipeline."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from chainwatch import logs
from chainwatch.logs import configure_logging, redact_secrets, register_secret

TOKEN = "123456:AAH-very-secret-token"
BOT_URL = f"https://api.telegram.org/bot{TOKEN}/sendMessage"


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets, and leaves none behind."""
    monkeypatch.setattr(logs, "_secrets", set())


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """A stream for configure_logging; afterwards logging and structlog are put back as they were."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_library_levels = {name: logging.getLogger(name).level for name in logs.NOISY_LIBRARIES}
    yield io.StringIO()
    for handler in [h for h in root.handlers if h not in saved_handlers]:
        root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, level in saved_library_levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()


def _json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestRedactSecrets:
    def test_without_secrets_event_is_untouched(self) -> None:
        """With nothing registered the processor returns the event as it is."""
        event = {"event": "x", "url": BOT_URL}
        assert redact_secrets(None, "info", event) is event

    def test_nested_values(self) -> None:
        """Strings inside dicts, lists and tuples, and keys, are redacted."""
        register_secret(TOKEN)
        event = {"event": f"bad {TOKEN}", "ctx": {"urls": [BOT_URL], "pair": (1, TOKEN)}, TOKEN: 1}
        assert redact_secrets(None, "info", event) == {
            "event": "bad ***",
            "ctx": {"urls": ["https://api.telegram.org/bot***/sendMessage"], "pair": (1, "***")},
            "***": 1,
        }

    def test_object_whose_repr_holds_a_secret(self) -> None:
        """An exception (or any object) whose text holds a secret becomes its redacted repr."""
        register_secret(TOKEN)
        redacted = redact_secrets(None, "error", {"event": "x", "error": RuntimeError(BOT_URL)})
        assert redacted["error"] == "RuntimeError('https://api.telegram.org/bot***/sendMessage')"

    def test_object_without_secret_is_kept(self) -> None:
        """Objects that do not show a secret are left for the renderer as they are."""
        register_secret(TOKEN)
        error = RuntimeError("harmless")
        assert redact_secrets(None, "error", {"event": "x", "error": error})["error"] is error

    def test_longer_secret_wins(self) -> None:
        """A secret containing another is replaced whole."""
        register_secret("abc")
        register_secret("abcdef")
        assert redact_secrets(None, "info", {"event": "abcdef abc"})["event"] == "*** ***"

    def test_empty_secret_is_ignored(self) -> None:
        """Registering an empty string would match everywhere, so it is ignored."""
        register_secret("")
        assert redact_secrets(None, "info", {"event": "text"}) == {"event": "text"}


class TestConfigureLogging:
    def test_json_event_fields(self, output: io.StringIO) -> None:
        """JSON lines carry the event, level, logger, ISO timestamp and bound context variables."""
        configure_logging(json=True, stream=output)
        structlog.contextvars.bind_contextvars(block=42)
        try:
            structlog.get_logger("chainwatch.test").info("alert.sent", chat_id=7)
        finally:
            structlog.contextvars.clear_contextvars()
        (line,) = _json_lines(output)
        assert line["event"] == "alert.sent" and line["chat_id"] == 7 and line["block"] == 42
        assert line["level"] == "info" and line["logger"] == "chainwatch.test"
        assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]

    def test_auto_picks_json_when_not_a_tty(self, output: io.StringIO) -> None:
        """json=None renders JSON on a stream that is not a terminal."""
        configure_logging(stream=output)
        structlog.get_logger().info("hello")
        assert _json_lines(output)[0]["event"] == "hello"

    def test_console_renderer(self, output: io.StringIO) -> None:
        """json=False renders human-readable console lines."""
        configure_logging(json=False, stream=output)
        structlog.get_logger().info("hello", n=3)
        text = output.getvalue()
        assert "hello" in text and "n=3" in text and not text.startswith("{")

    def test_level_filters(self, output: io.StringIO) -> None:
        """Events below the configured level are dropped."""
        configure_logging(json=True, level="warning", stream=output)
        structlog.get_logger().info("quiet")
        structlog.get_logger().warning("loud")
        assert [line["event"] for line in _json_lines(output)] == ["loud"]

    def test_unknown_level(self, output: io.StringIO) -> None:
        """An unknown level name is refused."""
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging(level="chatty", stream=output)

    def test_noisy_library_info_is_dropped(self, output: io.StringIO) -> None:
        """Library loggers show only warnings and above, even at debug level."""
        configure_logging(json=True, level="debug", stream=output)
        logging.getLogger("aiogram.event").info("Update id=1 is handled")
        logging.getLogger("web3.providers").warning("reconnecting")
        assert [line["event"] for line in _json_lines(output)] == ["reconnecting"]

    def test_reconfiguring_replaces_handler(self, output: io.StringIO) -> None:
        """Configuring twice does not print each event twice."""
        configure_logging(json=True, stream=output)
        configure_logging(json=True, stream=output)
        structlog.get_logger().info("once")
        assert len(_json_lines(output)) == 1


class TestRedactionEndToEnd:
    @pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
    def test_secret_in_event_values(self, output: io.StringIO, as_json: bool) -> None:
        """A registered secret in an event value is written as ***."""
        configure_logging(json=as_json, stream=output)
        register_secret(TOKEN)
        structlog.get_logger().info("bot.ready", url=BOT_URL, nested={"token": TOKEN})
        assert TOKEN not in output.getvalue() and "bot***" in output.getvalue()

    @pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
    def test_secret_in_exception(self, output: io.StringIO, as_json: bool) -> None:
        """An exception whose message holds the secret is logged, traceback included, without it."""
        configure_logging(json=as_json, stream=output)
        register_secret(TOKEN)
        log = structlog.get_logger()
        try:
            raise RuntimeError(f"Cannot connect to host {BOT_URL}")
        except RuntimeError as error:
            log.exception("send.failed", error=error)
        text = output.getvalue()
        assert TOKEN not in text
        assert "Traceback" in text and "RuntimeError: Cannot connect to host" in text

    @pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
    def test_secret_in_stdlib_library_record(self, output: io.StringIO, as_json: bool) -> None:
        """A plain-logging record from a library goes through the same redaction and renderer."""
        configure_logging(json=as_json, stream=output)
        register_secret(TOKEN)
        logging.getLogger("aiogram").error("Failed to fetch updates: %s", BOT_URL)
        text = output.getvalue()
        assert TOKEN not in text and "Failed to fetch updates" in text and "aiogram" in text
        if as_json:
            assert _json_lines(output)[0]["level"] == "error"

    def test_secret_in_stdlib_exception(self, output: io.StringIO) -> None:
        """A library's logger.exception() traceback is redacted too."""
        configure_logging(json=True, stream=output)
        register_secret(TOKEN)
        try:
            raise ConnectionError(BOT_URL)
        except ConnectionError:
            logging.getLogger("aiohttp.client").exception("request failed")
        (line,) = _json_lines(output)
        assert TOKEN not in output.getvalue() and "ConnectionError" in line["exception"]

    def test_secret_registered_after_configuring(self, output: io.StringIO) -> None:
        """Secrets registered at any time apply to every later line."""
        configure_logging(json=True, stream=output)
        log = structlog.get_logger()
        log.info("before", token="not-yet")
        register_secret("not-yet")
        log.info("after", token="not-yet")
        assert [line["token"] for line in _json_lines(output)] == ["not-yet", "***"]
