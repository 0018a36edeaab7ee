"""What every benchmark's command line shares: argument types, ``--quick``, a scratch home, and
the report's ending (elapsed time on stderr, then JSON or tables on stdout)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from agentfleet import db


def at_least(low: int) -> Callable[[str], int]:
    """An ``argparse`` type: an integer of ``low`` or more."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low}")
        return value

    return parse


def int_list(
    what: str, low: int, high: int, *, allow_empty: bool = False, unique: bool = True
) -> Callable[[str], list[int]]:
    """An ``argparse`` type: comma-separated integers between ``low`` and ``high`` (sorted and
    without repeats when ``unique``; ``''`` is an empty list when ``allow_empty``)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
        if (not values and not allow_empty) or any(not low <= v <= high for v in values):
            raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}")
        return sorted(set(values)) if unique else values

    return parse


def apply_quick(args: argparse.Namespace, quick: Mapping[str, Any]) -> argparse.Namespace:
    """With ``--quick``, the benchmark's tiny sizes replace the given ones."""
    if args.quick:
        for key, value in quick.items():
            setattr(args, key, value)
    return args


@contextlib.contextmanager
def scratch_home(name: str) -> Iterator[tuple[Path, str]]:
    """A temporary ``FLEET_HOME`` and its SQLite URL; at the end the database's engine is
    disposed and the folder removed."""
    home = Path(tempfile.mkdtemp(prefix=f"fleet-bench-{name}-"))
    url = f"sqlite:///{home / 'fleet.db'}"
    try:
        yield home, url
    finally:
        db.dispose_engine(url)
        shutil.rmtree(home, ignore_errors=True)


def finish(
    report: dict[str, Any],
    started: float,
    err: Console,
    *,
    as_json: bool,
    json_text: Callable[[], str],
    tables: Callable[[], None],
) -> int:
    """Stamp ``elapsed_s``, say so on stderr, print the JSON or the tables; the exit status."""
    report["elapsed_s"] = time.perf_counter() - started
    err.print(f"done in {report['elapsed_s']:.0f} s")
    if as_json:
        print(json_text())
    else:
        tables()
    return 0
