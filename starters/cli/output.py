"""How every CLI command talks to a person (Rich) or a script (``--json``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from agentfleet.redaction import redact

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
"""The ``--json`` option most commands take."""


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1, *, as_json: bool = False) -> NoReturn:
    """One line on stderr (and a JSON error object on stdout with ``--json``), then exit.
    Secrets the process knows are masked (:func:`agentfleet.redaction.redact`)."""
    message = redact(message)
    if as_json:
        emit_json({"ok": False, "error": message})
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)


def read_database(what: str, read: Callable[[], T], *, as_json: bool = False) -> T:
    """``read()`` from the fleet's database, or one line that says what to do (no schema yet,
    wrong URL) and exit 1."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - no database yet, wrong URL, server down
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        if "no such table" in reason or "does not exist" in reason:
            reason = "the database has no schema yet"
        fail(f"cannot read {what}: {reason}; run `fleet up` (or `fleet setup`)", as_json=as_json)


def print_rows(
    rows: Sequence[R], as_json: bool, draw: Callable[[Sequence[R]], Table], empty: str
) -> None:
    """``rows`` as a JSON list with ``--json``; else the table ``draw`` makes of them, or the
    ``empty`` hint on stderr when there are none."""
    if as_json:
        emit_json([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        err_console.print(empty)
        return
    console.print(draw(rows))
