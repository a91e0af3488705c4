"""Carrier: an ElizaOS-style agent runtime driven from the `carrier` command line.

Everything the command line does is usable as a library; these are the supported names
(docs/library.md shows them at work). They are imported on first use, so
`import carrier_cli` costs nothing and `carrier --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carrier_cli._lazy import lazy_exports
from carrier_cli.runtime import _EXPORTS as _RUNTIME_EXPORTS

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the runtime and the plugin protocols: all of carrier_cli.runtime's names
    **_RUNTIME_EXPORTS,
    # memory
    "MemoryStore": "carrier_cli.memory.store",
    "Memory": "carrier_cli.memory.types",
    "MemoryKind": "carrier_cli.memory.types",
    "Room": "carrier_cli.memory.types",
    "Entity": "carrier_cli.memory.types",
    "SearchHit": "carrier_cli.memory.types",
    # characters
    "Character": "carrier_cli.character.model",
    "load_character": "carrier_cli.character.loader",
    "resolve_character": "carrier_cli.character.loader",
    # settings
    "Settings": "carrier_cli.config",
    "load_settings": "carrier_cli.config",
    # models
    "ChatModel": "carrier_cli.llm.base",
    "ChatMessage": "carrier_cli.llm.base",
    "Embedder": "carrier_cli.llm.base",
    "ScriptedChatModel": "carrier_cli.llm.scripted",
    # errors
    "CarrierError": "carrier_cli.errors",
    "InputError": "carrier_cli.errors",
    "ConfigError": "carrier_cli.errors",
    "RuntimeFailure": "carrier_cli.errors",
}

__all__ = [
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
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from carrier_cli.character.loader import load_character, resolve_character
    from carrier_cli.character.model import Character
    from carrier_cli.config import Settings, load_settings
    from carrier_cli.errors import CarrierError, ConfigError, InputError, RuntimeFailure
    from carrier_cli.llm.base import ChatMessage, ChatModel, Embedder
    from carrier_cli.llm.scripted import ScriptedChatModel
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Entity, Memory, MemoryKind, Room, SearchHit
    from carrier_cli.runtime.agent import AgentRuntime
    from carrier_cli.runtime.context import TurnContext, TurnServices
    from carrier_cli.runtime.plugins import Action, ActionExample, Evaluator, Plugin, Provider
    from carrier_cli.runtime.rooms import TurnHooks
    from carrier_cli.runtime.types import Addressing, IncomingMessage, TurnEvent, TurnResult
