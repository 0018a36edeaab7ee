"""The house's rules, read from the sources: arrows point down and nothing imports in a circle.

starters -> clients -> (workflows, activities) -> agentfleet. Every import counts: at module level,
inside a function, or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agentfleet", "clients", "workflows", "activities", "workers", "starters", "sandbox")
ABOVE_THE_CORE = ("clients", "workflows", "activities", "workers", "starters", "sandbox", "bench")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                found = resolve(name)
                if found and found != module:
                    targets.add(found)
        graph[module] = targets
    return graph


def test_the_core_imports_nothing_above_it() -> None:
    upward = sorted(
        (module, target)
        for module, targets in _imports().items()
        if module.startswith("agentfleet")
        for target in targets
        if target.split(".")[0] in ABOVE_THE_CORE
    )
    assert upward == []


def test_workflows_import_no_starter_and_clients_no_starter() -> None:
    upward = sorted(
        (module, target)
        for module, targets in _imports().items()
        if module.split(".")[0] in ("workflows", "activities", "clients")
        for target in targets
        if target.split(".")[0] in ("starters", "sandbox")
    )
    assert upward == []


def test_no_import_cycle() -> None:
    graph = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert cycles == []
