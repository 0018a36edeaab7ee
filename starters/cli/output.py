"""How every CLI command talks to a person (Rich) or a script (``--json``)."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1, *, as_json: bool = False) -> NoReturn:
    """One line on stderr (and a JSON error object on stdout with ``--json``), then exit."""
    if as_json:
        emit_json({"ok": False, "error": message})
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
