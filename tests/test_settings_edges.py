"""Which modules may see `carrier_cli.config.Settings`: the edges only.

`Settings` holds every component's fields (models, memory, Discord, Instagram, FTP,
Graph). The edges read it: the CLI's state, the supervisor and each client's entry point
(the `carrier.clients` interface hands a client the settings), the Instagram command
functions, the model and embedding factories, the memory conveniences, the runtime's
`create`, and each component's options module, which turns it into the small frozen
object the component's code takes (`clients/discord/options.py`,
`clients/instagram/options.py`). Everything below an edge takes options.

The set below can only grow deliberately: a new module importing `Settings` (at module
level, inside a function or under TYPE_CHECKING, from `carrier_cli.config` or the
package's re-export) fails this test until it is added here with a reason. Read with the
standard library's ast, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "carrier_cli"

ALLOWED: dict[str, str] = {
    "carrier_cli": "re-exports it: the public library surface",
    "carrier_cli.config_template": "the settings layer itself: writes config.example.yaml",
    "carrier_cli.state": "the CLI's loaded settings and their secrets",
    "carrier_cli.clients.supervisor": "runs clients: hands each the settings",
    "carrier_cli.clients.discord.options": "builds DiscordOptions",
    "carrier_cli.clients.discord.runner": "run_discord_client, preflight: the client entry",
    "carrier_cli.clients.api.options": "builds ApiOptions",
    "carrier_cli.clients.api.server": "serve(options, settings): the `carrier serve` entry",
    "carrier_cli.cluster.event_relay": "open_relay(settings): the relay's entry, as a client's",
    "carrier_cli.clients.instagram.options": "builds GraphOptions, FtpOptions, InstagramOptions",
    "carrier_cli.clients.instagram.autopost": "run_instagram_client: the client entry",
    "carrier_cli.clients.instagram.service": "what `carrier instagram ...` calls: the edge",
    "carrier_cli.clients.instagram.queueing": "what `carrier instagram queue ...` calls: the edge",
    "carrier_cli.llm.factory": "the model edge: picks providers from the settings",
    "carrier_cli.llm.embeddings": "the embedding model edge",
    "carrier_cli.memory.store": "MemoryStore.from_settings, a convenience at the edge",
    "carrier_cli.memory.admin": "opens the store for the memory commands",
    "carrier_cli.memory.call_reports": "opens the store for `carrier logs` and `carrier usage`",
    "carrier_cli.cli.logs": "the CLI: hands the loaded settings to memory.call_reports",
    "carrier_cli.runtime.agent": "AgentRuntime.create(character, settings)",
    "carrier_cli.webhooks.options": "builds WebhookOptions",
    "carrier_cli.webhooks.sender": "services(settings), webhook_service: the supervisor service",
    "carrier_cli.webhooks.admin": "what `carrier webhooks ...` calls: the edge",
    "carrier_cli.cli.webhooks": "the CLI: hands the loaded settings to webhooks.admin",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module an ImportFrom reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = name if is_package else name.rpartition(".")[0]
    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def sees_settings(source: str, name: str, *, is_package: bool = False) -> bool:
    """Whether a module imports `Settings` from carrier_cli.config (or the package's
    re-export), or imports the config module and reads `.Settings` off it."""
    imports_config_module = False
    reads_settings_attribute = False
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, is_package)
            names = {alias.name for alias in node.names}
            if base in ("carrier_cli.config", "carrier_cli") and "Settings" in names:
                return True
            if base == "carrier_cli" and "config" in names:
                imports_config_module = True
        elif isinstance(node, ast.Import):
            if any(alias.name == "carrier_cli.config" for alias in node.names):
                imports_config_module = True
        elif isinstance(node, ast.Attribute) and node.attr == "Settings":
            reads_settings_attribute = True
    return imports_config_module and reads_settings_attribute


def _modules_seeing_settings() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name == "carrier_cli.config":
            continue  # where it is defined
        source = path.read_text(encoding="utf-8")
        if sees_settings(source, name, is_package=path.name == "__init__.py"):
            found.add(name)
    return found


def test_the_checker_sees_every_way_in() -> None:
    assert sees_settings("from carrier_cli.config import Settings\n", "carrier_cli.x")
    assert sees_settings("from carrier_cli.config import Settings as S\n", "carrier_cli.x")
    assert sees_settings("from carrier_cli import Settings\n", "carrier_cli.x")
    assert sees_settings("from ..config import Settings\n", "carrier_cli.clients.x")
    typed = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from carrier_cli.config import Settings\n"
    )
    assert sees_settings(typed, "carrier_cli.x")
    lazy = "def f():\n    from carrier_cli.config import Settings\n"
    assert sees_settings(lazy, "carrier_cli.x")
    assert sees_settings("import carrier_cli.config\nS = carrier_cli.config.Settings\n", "a")
    assert sees_settings("from carrier_cli import config\nS = config.Settings\n", "a")
    assert not sees_settings("from carrier_cli.config import load_settings\n", "carrier_cli.x")
    assert not sees_settings("from carrier_cli.character import ModelSettings\n", "carrier_cli.x")


def test_only_the_edges_see_settings() -> None:
    found = _modules_seeing_settings()
    unexpected = sorted(found - set(ALLOWED))
    assert not unexpected, (
        "these modules import carrier_cli.config.Settings but are not edges: "
        f"{', '.join(unexpected)}. Take the component's options object instead "
        "(clients/*/options.py), or add the module to ALLOWED with the reason it is an edge."
    )
    gone = sorted(set(ALLOWED) - found)
    assert not gone, f"no longer import Settings: drop them from ALLOWED: {', '.join(gone)}"
