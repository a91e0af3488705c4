"""Carrier's own plugin: the built-in actions and the fact evaluator, as one `Plugin`.

It is loaded through `runtime.plugins.BUILTIN_PLUGINS` exactly as an installed
`carrier.plugins` entry point is, always first: nothing else wires these by hand.
"""

from __future__ import annotations

from carrier_cli.runtime.builtin_actions import builtin_actions
from carrier_cli.runtime.evaluators import FactEvaluator
from carrier_cli.runtime.plugins import Plugin

NAME = "builtin"


def builtin_plugin() -> Plugin:
    """A fresh instance per runtime, so tuning one runtime's evaluator touches no other."""
    return Plugin(
        name=NAME,
        description="Always loaded.",
        actions=builtin_actions(),
        evaluators=[FactEvaluator()],
    )
