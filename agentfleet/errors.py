"""Errors meant for a person: one line that says what is wrong and what to do next."""

from __future__ import annotations


class FleetError(Exception):
    """A user-facing failure. The CLI prints ``error: <message>`` and exits with ``exit_code``."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
