"""The agent runtime loop and the plugin protocols.

The names below are the runtime's library surface (also re-exported by `carrier_cli`);
they are imported on first use, so importing one runtime module stays as cheap as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carrier_cli._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "AgentRuntime": "carrier_cli.runtime.agent",
    "IncomingMessage": "carrier_cli.runtime.types",
    "Addressing": "carrier_cli.runtime.types",
    "TurnHooks": "carrier_cli.runtime.rooms",
    "TurnResult": "carrier_cli.runtime.types",
    "TurnEvent": "carrier_cli.runtime.types",
    "TurnContext": "carrier_cli.runtime.context",
    "TurnServices": "carrier_cli.runtime.context",
    "Plugin": "carrier_cli.runtime.plugins",
    "Action": "carrier_cli.runtime.plugins",
    "ActionExample": "carrier_cli.runtime.plugins",
    "Provider": "carrier_cli.runtime.plugins",
    "Evaluator": "carrier_cli.runtime.plugins",
}

__all__ = [
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
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from carrier_cli.runtime.agent import AgentRuntime
    from carrier_cli.runtime.context import TurnContext, TurnServices
    from carrier_cli.runtime.plugins import Action, ActionExample, Evaluator, Plugin, Provider
    from carrier_cli.runtime.rooms import TurnHooks
    from carrier_cli.runtime.types import Addressing, IncomingMessage, TurnEvent, TurnResult
