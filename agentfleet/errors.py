"""Errors meant for a person: one line that says what is wrong and what to do next."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when it has none), for one-line errors,
    redacted of the process's secrets (an RPC URL's key, a bot token). A database error's driver
    message (``exc.orig``) is preferred to SQLAlchemy's wrapper."""
    from agentfleet.redaction import redact

    origin = getattr(exc, "orig", None) or exc
    text = redact(str(origin).strip()) or type(exc).__name__
    return text.splitlines()[0][:limit]


class FleetError(Exception):
    """A user-facing failure. The CLI prints ``error: <message>`` and exits with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
