"""Run one benchmark in full and keep its output: ``docs/benchmarks/NAME.json``.

    python bench/keep.py NAME [benchmark options] [--note TEXT] [--out DIR]

NAME is a module of ``bench/`` (``skeleton``, ``chain``, ``lifecycle``, ``payments``, ``content``,
``command_center``, ``learning``, ``agent_runs``). The benchmark runs as ``python bench/NAME.py
--json [options]``; its JSON report is kept with the command, the time it was measured (UTC) and
the machine: cores, architecture, Python and the load average before and after the run, since
figures from a loaded machine only compare within their own run. ``docs/benchmarks.md`` quotes
figures from these files only. A failed run keeps nothing and exits with its status.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEPT = ROOT / "docs" / "benchmarks"
NAMES = sorted(
    path.stem
    for path in (ROOT / "bench").glob("*.py")
    if path.stem not in {"__init__", "harness", "shapes", "keep"}
)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def _report(stdout: str) -> Any:
    """The JSON report in ``stdout``. The SDK's core writes its own warnings to stdout (e.g.
    "Task not found" after the server force-closed a workflow task); those lines are skipped: the
    report starts at a line that is ``{`` alone, and what follows it is not kept."""
    lines = stdout.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "{"), 0)
    text = "".join(lines[start:])
    return json.JSONDecoder().raw_decode(text)[0]


def machine(before: str, after: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "load_average_before": before,
        "load_average_after": after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/keep.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("name", choices=NAMES, help="the benchmark to run")
    parser.add_argument("--note", default="", help="what the reader should know about this run")
    parser.add_argument(
        "--out", type=Path, default=KEPT, help="the folder to keep it in (docs/benchmarks)"
    )
    args, options = parser.parse_known_args(argv)
    command = [sys.executable, str(ROOT / "bench" / f"{args.name}.py"), "--json", *options]
    shown = " ".join(["python", f"bench/{args.name}.py", "--json", *options])
    print(f"==> {shown} (its progress follows; the report goes to {args.out})", flush=True)
    before = _load()
    started = datetime.datetime.now(datetime.UTC)
    done = subprocess.run(  # noqa: S603 - our own benchmark script, the user's options
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        print(f"{args.name}: the benchmark failed (exit {done.returncode}); nothing kept")
        return done.returncode
    try:
        report = _report(done.stdout)
    except json.JSONDecodeError as exc:
        start = max(exc.pos - 120, 0)
        print(
            f"{args.name}: the benchmark's output is not one JSON report ({exc.msg} at "
            f"character {exc.pos}, near {done.stdout[start : exc.pos + 120]!r}); nothing kept"
        )
        return 1
    kept = {
        "benchmark": args.name,
        "command": shown,
        "measured": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(before, _load()),
        "note": args.note,
        "runs": [report],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(kept, indent=1) + "\n")
    print(f"kept {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
