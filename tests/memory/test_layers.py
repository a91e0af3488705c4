"""The memory package's layering: no import cycle among its modules (imports inside
functions count too; `if TYPE_CHECKING:` blocks do not), and the backends are loaded only
by the factory that picks one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import carrier_cli.memory

PACKAGE = Path(carrier_cli.memory.__file__).parent


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        if relative.parts[0] == "migrations":
            continue  # Alembic scripts, loaded by Alembic
        parts = [p for p in relative.parts if p != "__init__"]
        found[".".join(["carrier_cli.memory", *parts])] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module in modules:
                found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in modules
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
    return found


def test_no_import_cycle_in_the_memory_package() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str], done: set[str]) -> None:
        for target in sorted(graph[name]):
            if target in stack:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in done:
                done.add(target)
                visit(target, [*stack, target], done)

    for name in sorted(graph):
        visit(name, [name], {name})
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_opening_the_store_module_loads_no_backend() -> None:
    code = (
        "import sys, carrier_cli.memory.store, carrier_cli.memory.admin; "
        "print(sorted(m for m in sys.modules if m.startswith(('carrier_cli.memory.sqlite', "
        "'carrier_cli.memory.postgres'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
