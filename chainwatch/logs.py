"""Logging for chainwatch: structlog events and stdlib library records through one redacting renderer on stderr.

`configure_logging()` is called once by the CLI; `register_secret()` names strings (the bot token) that must never be
written, wherever they turn up: an event value, an exception message, a traceback, a library's log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["NOISY_LIBRARIES", "REDACTED", "configure_logging", "redact_secrets", "register_secret"]

REDACTED = "***"

# Libraries that log routine chatter at INFO (every update handled, every connection); only their warnings show.
NOISY_LIBRARIES = ("aiogram", "aiohttp", "aiosqlite", "asyncio", "web3", "websockets", "urllib3")

# Marks our handler on the root logger, so that configuring again replaces it and leaves others' (pytest's) alone.
_HANDLER_NAME = "chainwatch"

# Registered at run time, never at import; a set of exact strings to cut out of every rendered line.
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Replace `value` by `***` in every log line from now on (empty strings are ignored: they match everywhere)."""
    if value:
        _secrets.add(value)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: every registered secret replaced by `***` in the event's keys and values, however nested."""
    if not _secrets:
        return event_dict
    # Longest first, so a secret that contains another is cut whole.
    secrets = sorted(_secrets, key=len, reverse=True)
    return {_redact(key, secrets): _redact(value, secrets) for key, value in event_dict.items()}


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_redact(v, secrets) for v in value)
    # Anything else (an exception, a URL object, a Secret-unaware client) is rendered by repr() or str() later;
    # if either would show a secret, render it now, redacted.
    text = repr(value)
    if any(secret in text or secret in str(value) for secret in secrets):
        return _redact(text, secrets)
    return value


def configure_logging(*, json: bool | None = None, level: str = "info", stream: TextIO | None = None) -> None:
    """Send structlog events and stdlib records to `stream` (stderr): console lines on a TTY, JSON lines otherwise.

    `json=None` picks by whether the stream is a TTY. Calling it again replaces the previous setup.
    """
    stream = sys.stderr if stream is None else stream
    numeric_level = _level_number(level)
    as_json = not stream.isatty() if json is None else json

    # Run for structlog events and for foreign (stdlib) records alike, before the shared formatter.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text here so that the redaction below sees them: an exception's message can hold
            # the bot URL with its token (aiogram's do).
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(numeric_level)
    handler.set_name(_HANDLER_NAME)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _quiet(NOISY_LIBRARIES, numeric_level)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Caching would pin module-level loggers to the first configuration and defeat structlog.testing.capture_logs.
        cache_logger_on_first_use=False,
    )


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r} (use debug, info, warning, error or critical)")
    return number


def _quiet(names: Iterable[str], level: int) -> None:
    for name in names:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
