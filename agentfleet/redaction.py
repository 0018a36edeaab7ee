"""Secrets never leave a process in text: one registry of this process's secret values, and
:func:`redact` for every place text leaves it (logs, failure messages sent to Temporal, HTTP
error answers, CLI errors).

:func:`install` collects the secrets configured in :class:`~agentfleet.settings.Settings` (keys,
tokens, passwords, and the secret parts of URLs: user info, query values, path segments that look
like keys); code that loads a secret from elsewhere (a generated file, a decrypted wallet key)
adds it with :func:`register`. Besides those values, :func:`redact` masks what looks like a
secret wherever it comes from: a password in a URL, a Telegram bot token in a Bot API path, and a
64-hex private key named as one. 64-hex values in general stay readable (transaction hashes,
EIP-3009 nonces and the workflow ids built from them are an operator's handles); the private keys
this process knows are masked because they are registered.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import SecretStr


class Configured(Protocol):
    """What redaction reads of a process's settings (:class:`agentfleet.settings.Settings`;
    a protocol, since the settings use this module to show URLs)."""

    @property
    def rpc_url(self) -> str | None: ...
    @property
    def openai_base_url(self) -> str | None: ...
    @property
    def database_url(self) -> str | None: ...
    @property
    def telegram_api_url(self) -> str | None: ...
    @property
    def log_level(self) -> str: ...


MASK = "***"
MIN_SECRET_LENGTH = 8
"""Shorter values are not registered: masking every ``admin`` or ``1234`` would garble text and
hide nothing worth hiding."""

_HEX64 = re.compile(r"(?<![0-9A-Za-z])(0x)?([0-9a-fA-F]{64})(?![0-9A-Za-z])")
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<pw>[^/\s@]+)@")
_BOT_TOKEN = re.compile(r"(?P<head>bot\d{3,}:)[A-Za-z0-9_-]{20,}")
_NAMED_KEY = re.compile(
    r"(?i)(?P<head>(?:private[_ -]?key|priv[_ -]?key|secret[_ -]?key|secret)[\"']?\s*[:=]\s*"
    r"[\"']?)(?:0x)?[0-9a-f]{64}(?![0-9a-f])"
)
_KEYLIKE_SEGMENT = re.compile(r"^[A-Za-z0-9_.~-]{16,}$")

_lock = threading.Lock()
_literals: set[str] = set()
_hex_keys: set[str] = set()
_pattern: re.Pattern[str] | None = None


def looks_like_key(text: str) -> bool:
    """A URL path segment or user name that is probably a credential: 16+ URL-safe characters
    mixing letters and digits (``/v3/<infura id>``, ``/v2/<alchemy key>``), not a word such as
    ``polygon-amoy`` or ``v1``."""
    return bool(
        _KEYLIKE_SEGMENT.match(text)
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of ``url``: its password; for web URLs (an RPC, LLM or Bot API
    endpoint) also a key-like user name, query values and path segments that look like keys.
    Host, port and ordinary path segments are not secret, nor a database URL's path."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    if parts.scheme.lower() not in {"http", "https", "ws", "wss"}:
        return found
    if parts.username and looks_like_key(parts.username):
        found += [parts.username, unquote(parts.username)]
    for _, value in parse_qsl(parts.query, keep_blank_values=False):
        found.append(value)
    for raw in parts.query.split("&"):
        found.append(raw.partition("=")[2])
    for segment in parts.path.split("/"):
        if looks_like_key(segment) or looks_like_key(unquote(segment)):
            found += [segment, unquote(segment)]
    return [value for value in found if value]


def secrets_of(settings: Configured) -> list[str]:
    """Every secret value ``settings`` holds: each ``SecretStr`` setting (keys, tokens,
    passwords, whichever are added later) and the secret parts of the configured URLs
    (unfiltered: :func:`register` drops short ones)."""
    values: list[str] = []
    for name in getattr(type(settings), "model_fields", {}):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    for url in (
        settings.rpc_url,
        settings.openai_base_url,
        settings.database_url,
        settings.telegram_api_url,
    ):
        values += url_secrets(url)
    return values


def install(settings: Configured | None = None, *extra: str | SecretStr | None) -> None:
    """Register the secrets of ``settings`` and ``extra`` for :func:`redact` (cumulative and
    idempotent: call it wherever a process reads its settings)."""
    values: list[str | SecretStr | None] = list(extra)
    if settings is not None:
        values += secrets_of(settings)
    register(*values)


def register(*values: str | SecretStr | None) -> None:
    """Mask these values from now on (None, empty and short values are ignored)."""
    global _pattern
    with _lock:
        changed = False
        for value in values:
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text is None:
                continue
            text = text.strip()
            if len(text) < MIN_SECRET_LENGTH:
                continue
            bare = text.removeprefix("0x").removeprefix("0X")
            if len(bare) == 64 and all(c in "0123456789abcdefABCDEF" for c in bare):
                _hex_keys.add(bare.lower())
            if text not in _literals:
                _literals.add(text)
                changed = True
        if changed:
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(_literals, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def reset() -> None:
    """Forget every registered secret (tests)."""
    global _pattern
    with _lock:
        _literals.clear()
        _hex_keys.clear()
        _pattern = None


def _hex_key(match: re.Match[str]) -> str:
    return MASK if match.group(2).lower() in _hex_keys else match.group(0)


def redact(text: str) -> str:
    """``text`` with every registered secret, every URL password, Telegram bot token and named
    private key replaced by ``***``."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if _hex_keys:
        text = _HEX64.sub(_hex_key, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _BOT_TOKEN.sub(lambda m: f"{m['head']}{MASK}", text)
    return _NAMED_KEY.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_url(url: str) -> str:
    """``url`` for display: its password, query values and key-like path segments masked."""
    return redact_with(url, url_secrets(url))


def redact_with(text: str, values: Iterable[str]) -> str:
    """:func:`redact`, also masking ``values`` (not registered)."""
    for value in sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True):
        text = text.replace(value, MASK)
    return redact(text)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose whole output (message, arguments, traceback) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    settings: Configured, *, level: str | None = None, quiet: Iterable[str] = ("httpx",)
) -> None:
    """The logging of a fleet process: ``level`` (default ``settings.log_level``) on stderr,
    every line redacted (uncaught exceptions too). Loggers in ``quiet`` log warnings only (httpx
    logs each request's URL at INFO)."""
    install(settings)
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or settings.log_level)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    redact_uncaught_exceptions()


def redact_handlers(logger: logging.Logger) -> None:
    """Wrap the formatters of ``logger``'s own handlers (uvicorn's) so their output is redacted."""
    for handler in logger.handlers:
        inner = handler.formatter or logging.Formatter()
        if not isinstance(inner, _WrappedFormatter):
            handler.setFormatter(_WrappedFormatter(inner))


class _WrappedFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def redact_uncaught_exceptions() -> None:
    """An uncaught exception's traceback is printed redacted."""
    if getattr(sys.excepthook, "_redacting", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        import traceback

        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(redact(text))
        sys.stderr.flush()

    hook._redacting = True  # type: ignore[attr-defined]
    sys.excepthook = hook
