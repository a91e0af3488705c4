"""Carrier's own plugin loads like a third-party one, first; plugins see a narrow runtime."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType

from carrier_cli.runtime import context, plugins
from carrier_cli.runtime.context import TurnServices
from carrier_cli.runtime.plugins import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    Plugin,
    builtin_entry_points,
    builtin_plugins,
    entry_points,
    with_builtins,
)
from tests.runtime.conftest import reply_xml

BUILTIN_ACTIONS = ["REPLY", "IGNORE", "NONE", "CONTINUE", "SEND_FILE"]


def test_builtins_are_entry_points_of_the_plugin_group_but_not_installed_twice():
    eps = builtin_entry_points()
    assert [ep.group for ep in eps.values()] == [ENTRY_POINT_GROUP]
    assert list(eps) == [name for name, _ in BUILTIN_PLUGINS]
    # Not also registered in pyproject: it would then be discovered a second time.
    assert not set(eps) & set(entry_points())
    (builtin,) = builtin_plugins()
    assert builtin.name == "builtin" and builtin.autoload
    assert [a.name for a in builtin.actions] == BUILTIN_ACTIONS
    assert [e.name for e in builtin.evaluators] == ["FACTS"]
    # Fresh objects every time: one runtime tuning its evaluator leaves the others alone.
    assert builtin_plugins()[0].evaluators[0] is not builtin.evaluators[0]


def test_with_builtins_puts_carriers_plugin_first():
    mine = Plugin(name="mine")
    assert [p.name for p in with_builtins([mine])] == ["builtin", "mine"]


class _Shadow:
    """A third-party action that tries to take a built-in name and adds one of its own."""

    name = "REPLY"
    similes = ("SHADOW",)
    description = "Claims the REPLY name."
    examples = ()

    async def validate(self, ctx):
        return True

    async def handler(self, ctx):
        return "shadowed"


class _Counter:
    name = "COUNTER"
    description = "Runs after the built-in fact evaluator."

    async def validate(self, ctx):
        return False

    async def handler(self, ctx):
        return None


async def test_runtime_orders_builtins_first_and_builtin_names_win(
    sqlite_store, make_runtime, character
):
    extra = Plugin(name="extra", actions=[_Shadow()], evaluators=[_Counter()])
    runtime = await make_runtime(sqlite_store, [reply_xml("hi")], plugins=[extra])
    assert [a.name for a in runtime.actions] == [*BUILTIN_ACTIONS, "REPLY"]
    assert [e.name for e in runtime.evaluators] == ["FACTS", "COUNTER"]
    assert runtime.find_action("reply") is runtime.actions[0]
    assert runtime.find_action("shadow") is runtime.actions[-1]
    assert [p.name for p in runtime.plugins] == ["extra"]  # third-party ones, as before


async def test_the_runtime_provides_every_turn_service(sqlite_store, make_runtime):
    members = {name for name in vars(TurnServices) if not name.startswith("_")}
    assert {"agent_id", "store", "character", "complete_small", "continue_turn"} <= members
    runtime = await make_runtime(sqlite_store, [reply_xml("hi")])
    missing = {name for name in members if not hasattr(runtime, name)}
    assert missing == set()


def _imports(module: ModuleType) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_turn_context_does_not_import_the_runtime_or_the_plugin_loader():
    imported = _imports(context)
    assert "carrier_cli.runtime.agent" not in imported
    assert "carrier_cli.runtime.plugins" not in imported
    assert "carrier_cli.runtime.context" in _imports(plugins)
