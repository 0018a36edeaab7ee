"""``python bench/<name>.py`` puts bench/ first on the import path: no benchmark may be named like a
package it imports (bench/agents.py once hid the OpenAI Agents SDK's ``agents``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_keep_finds_the_report_past_the_sdks_own_lines_on_stdout() -> None:
    """The SDK core writes warnings to stdout ("Task not found" broke a content run's report)."""
    spec = importlib.util.spec_from_file_location("bench_keep", BENCH / "keep.py")
    assert spec is not None and spec.loader is not None
    keep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keep)
    stdout = '\x1b[2mWARN\x1b[0m Task not found\n{\n  "rows": [1]\n}\nWARN after\n'
    assert keep._report(stdout) == {"rows": [1]}
    with pytest.raises(json.JSONDecodeError):
        keep._report("no report at all\n")


def test_keep_keeps_nothing_when_the_benchmark_fails(tmp_path: Path) -> None:
    done = run_keep("skeleton", "--runs", "0", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "nothing kept" in done.stdout
    assert not (tmp_path / "skeleton.json").exists()
    unknown = run_keep("nosuch", "--out", str(tmp_path))
    assert unknown.returncode == 2
    assert "invalid choice: 'nosuch'" in unknown.stderr
