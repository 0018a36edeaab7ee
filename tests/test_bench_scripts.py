"""``python bench/<name>.py`` puts bench/ first on the import path: no benchmark may be named like a
package it imports (bench/agents.py once hid the OpenAI Agents SDK's ``agents``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_no_benchmark_module_shadows_an_installed_package() -> None:
    shadowing = [
        path.name
        for path in BENCH.glob("*.py")
        if path.stem != "__init__"
        and (spec := importlib.util.find_spec(path.stem)) is not None
        and spec.origin is not None
        and Path(spec.origin).parent != BENCH
    ]
    assert shadowing == []


def run_keep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "keep.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


def test_keep_stores_a_benchmarks_report_with_when_and_where_it_ran(tmp_path: Path) -> None:
    done = run_keep("skeleton", "--quick", "--out", str(tmp_path), "--note", "a smoke run")
    assert done.returncode == 0, done.stdout + done.stderr
    kept = json.loads((tmp_path / "skeleton.json").read_text())
    assert kept["benchmark"] == "skeleton"
    assert kept["command"] == "python bench/skeleton.py --json --quick"
    assert kept["note"] == "a smoke run"
    assert {"cores", "arch", "python", "load_average_before", "load_average_after"} <= set(
        kept["machine"]
    )
    assert kept["runs"][0]["rows"], "the benchmark's own report is kept whole"


def test_keep_keeps_nothing_when_the_benchmark_fails(tmp_path: Path) -> None:
    done = run_keep("skeleton", "--runs", "0", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "nothing kept" in done.stdout
    assert not (tmp_path / "skeleton.json").exists()
    unknown = run_keep("nosuch", "--out", str(tmp_path))
    assert unknown.returncode == 2
    assert "invalid choice: 'nosuch'" in unknown.stderr
