"""``python bench/<name>.py`` puts bench/ first on the import path: no benchmark may be named like a
package it imports (bench/agents.py once hid the OpenAI Agents SDK's ``agents``)."""

from __future__ import annotations

import importlib.util
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
