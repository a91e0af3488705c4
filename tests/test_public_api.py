"""The library surface: what `carrier_cli`, `carrier_cli.runtime` and `carrier_cli.memory`
export is pinned here, so a rename or removal is a deliberate, reviewed change (httpx
keeps the same kind of test for its `__all__`)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC: dict[str, list[str]] = {
    "carrier_cli": [
        "Action",
        "ActionExample",
        "Addressing",
        "AgentRuntime",
        "CarrierError",
        "Character",
        "ChatMessage",
        "ChatModel",
        "ConfigError",
        "Embedder",
        "Entity",
        "Evaluator",
        "IncomingMessage",
        "InputError",
        "Memory",
        "MemoryKind",
        "MemoryStore",
        "Plugin",
        "Provider",
        "Room",
        "RuntimeFailure",
        "ScriptedChatModel",
        "SearchHit",
        "Settings",
        "TurnContext",
        "TurnEvent",
        "TurnHooks",
        "TurnResult",
        "TurnServices",
        "__version__",
        "load_character",
        "load_settings",
        "resolve_character",
    ],
    "carrier_cli.runtime": [
        "Action",
        "ActionExample",
        "Addressing",
        "AgentRuntime",
        "Evaluator",
        "IncomingMessage",
        "Plugin",
        "Provider",
        "TurnContext",
        "TurnEvent",
        "TurnHooks",
        "TurnResult",
        "TurnServices",
    ],
    "carrier_cli.memory": [
        "EmbeddingModelMismatch",
        "Entity",
        "Memory",
        "MemoryKind",
        "MemoryStore",
        "Room",
        "SearchHit",
        "stable_id",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_resolves_and_is_listed(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, name
        assert name in dir(module)


def test_reexports_are_the_defining_objects() -> None:
    import carrier_cli
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.runtime.agent import AgentRuntime
    from carrier_cli.runtime.types import IncomingMessage

    assert carrier_cli.AgentRuntime is AgentRuntime
    assert carrier_cli.MemoryStore is MemoryStore
    assert carrier_cli.IncomingMessage is IncomingMessage
    assert carrier_cli.runtime.AgentRuntime is AgentRuntime  # type: ignore[attr-defined]
    assert carrier_cli.memory.MemoryStore is MemoryStore  # type: ignore[attr-defined]


def test_unknown_names_are_attribute_errors() -> None:
    import carrier_cli

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        carrier_cli.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(carrier_cli, "MemoryBackendThatDoesNotExist")


HEAVY = ("numpy", "sqlalchemy", "openai", "anthropic", "discord", "fastapi", "redis", "httpx")


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_importing_the_package_imports_nothing_heavy() -> None:
    assert _imported_after("import carrier_cli, carrier_cli.runtime, carrier_cli.memory") == []
    # light names stay light: a plugin author importing the protocols pays for no database
    light = (
        "from carrier_cli import IncomingMessage, Memory, Character, Plugin, TurnContext, "
        "Settings, load_character, load_settings, ScriptedChatModel"
    )
    assert _imported_after(light) == []


def test_the_issue_one_liner_works() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from carrier_cli import AgentRuntime, MemoryStore, IncomingMessage, load_character",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
