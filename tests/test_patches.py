"""The patch registry (workflows/patches.py) and the workflows' patched() calls agree."""

from __future__ import annotations

import ast
from pathlib import Path

from workflows import patches

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def _patched_calls() -> list[tuple[str, str]]:
    """(file, argument source) of every workflow.patched()/deprecate_patch() call."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("patched", "deprecate_patch")
            ):
                found.append((path.name, ast.unparse(node.args[0])))
    return found


def test_every_patched_call_names_a_registered_patch() -> None:
    names = {name for name, value in vars(patches).items() if isinstance(value, patches.Patch)}
    calls = _patched_calls()
    assert calls, "no patched() call found: the scan is broken"
    unregistered = [
        (file, arg)
        for file, arg in calls
        if not (arg.startswith("patches.") and arg.endswith(".id") and arg[8:-3] in names)
    ]
    assert unregistered == [], "patched() must name a patch of workflows/patches.py"


def test_every_registered_patch_is_used_and_ids_are_unique() -> None:
    used = {arg[8:-3] for _, arg in _patched_calls()}
    registered = {name for name, value in vars(patches).items() if isinstance(value, patches.Patch)}
    assert registered - used == set(), "a registered patch no workflow uses: remove it"
    assert {p.id for p in patches.ALL} == {vars(patches)[n].id for n in registered}
    assert len({p.id for p in patches.ALL}) == len(patches.ALL)


def test_old_histories_named_by_a_patch_exist() -> None:
    histories = Path(__file__).resolve().parent / "histories"
    for patch in patches.ALL:
        for name in patch.old_histories:
            assert list(histories.glob(f"{name}_*.json")), f"{patch.id}: no history {name}"
