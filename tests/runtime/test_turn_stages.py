"""The shape of the turn: stages that never reach back into the runtime class, and one
module that builds every prompt."""

from __future__ import annotations

import ast
from pathlib import Path

import carrier_cli.runtime as runtime_pkg

RUNTIME = Path(runtime_pkg.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_stages_and_prompts_do_not_import_the_runtime_class() -> None:
    files = [*sorted((RUNTIME / "turn").glob("*.py")), RUNTIME / "prompts.py"]
    assert len(files) > 5
    for path in files:
        assert "carrier_cli.runtime.agent" not in _imports(path), path.name


def _system_messages(path: Path) -> int:
    count = 0
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "ChatMessage"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "system"
        ):
            count += 1
    return count


def test_the_system_message_is_built_in_one_place() -> None:
    counts = {p.relative_to(RUNTIME).as_posix(): _system_messages(p) for p in RUNTIME.rglob("*.py")}
    assert {name: n for name, n in counts.items() if n} == {"prompts.py": 1}
