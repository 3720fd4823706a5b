"""postgresql:// URLs: telling them from SQLite paths, and naming them without their password."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


class StorageUnavailable(Exception):
    """The configured database cannot be reached or used; the text never holds its password."""


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(SCHEMES)


def password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redacted(url: str) -> str:
    """The URL with its password (if any) as ***, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # unparsable (a bad port, say): say nothing of it rather than risk its secret
        return "postgresql://(unparsable URL)"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def scrubbed(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's password, raw or percent-decoded, replaced by ***."""
    for secret in {password_of(url), _raw_password(url)} - {None, ""}:
        text = text.replace(secret, "***")  # type: ignore[arg-type]
    return text


def _raw_password(url: str) -> str | None:
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo.partition(":")[2] or None if at else None
