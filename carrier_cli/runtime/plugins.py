"""Plugin protocols (Action, Provider, Evaluator), the Plugin bundle and plugin discovery.

Plugins come from two places: the `carrier.plugins` entry-point group (installed packages;
loaded for every character unless the plugin sets `autoload=False`) and the `plugins:` list
of a character (module paths, `module:attribute`, or entry-point names). Listing a plugin in
the character is how an opt-in plugin such as the bundled example is switched on.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext

log = logging.getLogger("carrier.runtime.plugins")

ENTRY_POINT_GROUP = "carrier.plugins"

# One line of an example conversation: {"name": "{{user1}}", "text": "...", "actions": [...]}
ActionExample = Mapping[str, Any]
ProviderResult = str | Mapping[str, str] | None


@runtime_checkable
class Action(Protocol):
    """Something the agent can do after deciding on a reply (ElizaOS `Action`).

    The model picks actions by name; `similes` are accepted alternatives. `validate` decides
    whether the action is offered this turn, `handler` runs it after the reply is stored and
    may return text, which the runtime stores and returns as an extra message.
    """

    name: str
    similes: Sequence[str]
    description: str
    examples: Sequence[Sequence[ActionExample]]

    async def validate(self, ctx: TurnContext) -> bool: ...

    async def handler(self, ctx: TurnContext) -> str | None: ...


@runtime_checkable
class Provider(Protocol):
    """Contributes context to the prompt. A str goes under `{{providers}}` as a section
    headed by the provider name; a mapping adds named template values."""

    name: str

    async def get(self, ctx: TurnContext) -> ProviderResult: ...


@runtime_checkable
class Evaluator(Protocol):
    """Runs after a turn (in the background) when `validate` says so, e.g. fact extraction."""

    name: str
    description: str

    async def validate(self, ctx: TurnContext) -> bool: ...

    async def handler(self, ctx: TurnContext) -> None: ...


@dataclass
class Plugin:
    name: str
    description: str = ""
    actions: list[Action] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    evaluators: list[Evaluator] = field(default_factory=list)
    autoload: bool = True  # False: only when a character lists it under `plugins:`


def normalize_action_name(name: str) -> str:
    """ElizaOS matches action names case-insensitively and ignoring underscores."""
    return name.replace("_", "").replace("-", "").replace(" ", "").upper()


def _coerce(obj: object, ref: str) -> Plugin:
    if isinstance(obj, Plugin):
        return obj
    if callable(obj):
        try:
            produced = obj()
        except Exception as exc:
            raise InputError(
                f"Plugin '{ref}': calling {getattr(obj, '__name__', obj)!r} to build the plugin "
                f"failed ({type(exc).__name__}: {exc}); it does not provide a Plugin.",
                hint="Point to a `Plugin` object or a function without arguments returning one.",
            ) from exc
        if isinstance(produced, Plugin):
            return produced
    raise InputError(
        f"Plugin '{ref}' does not provide a carrier_cli.runtime.plugins.Plugin.",
        hint="Expose a module attribute `plugin = Plugin(...)` (or a function returning one) "
        "and point to it as `package.module` or `package.module:attribute`.",
    )


def entry_points() -> dict[str, Any]:
    """Installed entry points of the `carrier.plugins` group, by name."""
    from importlib.metadata import entry_points as _eps

    return {ep.name: ep for ep in _eps(group=ENTRY_POINT_GROUP)}


def load_plugin(ref: str, *, where: str = "the character's `plugins:` list") -> Plugin:
    """Load a plugin from an entry-point name, `module` or `module:attribute`."""
    ref = ref.strip()
    eps = entry_points()
    if ref in eps and ":" not in ref and "." not in ref:
        try:
            return _coerce(eps[ref].load(), ref)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"Plugin '{ref}' (entry point in group {ENTRY_POINT_GROUP}, from {where}) "
                f"failed to load: {type(exc).__name__}: {exc}.",
                hint="Reinstall the package that provides it, or remove it from the list.",
            ) from exc
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        known = ", ".join(sorted(eps)) or "none installed"
        raise InputError(
            f"Plugin '{ref}' from {where} cannot be imported: {exc}.",
            hint=f"Use an importable module path (package.module[:attribute]) or an "
            f"installed plugin name (installed: {known}).",
        ) from exc
    if attr:
        if not hasattr(module, attr):
            raise InputError(f"Plugin '{ref}' from {where}: module has no attribute '{attr}'.")
        return _coerce(getattr(module, attr), ref)
    for candidate in ("plugin", "PLUGIN", "create_plugin"):
        if hasattr(module, candidate):
            return _coerce(getattr(module, candidate), ref)
    raise InputError(
        f"Plugin module '{module_name}' from {where} has no `plugin` attribute.",
        hint="Define `plugin = Plugin(name=..., actions=[...])` in it or use module:attribute.",
    )


def discover_plugins(
    character_refs: Sequence[str] = (),
    extra: Sequence[Plugin] = (),
    *,
    loader: Callable[[], dict[str, Any]] = entry_points,
) -> list[Plugin]:
    """Autoloaded entry-point plugins, then the character's, then `extra`; one per name."""
    found: dict[str, Plugin] = {}
    for name, ep in loader().items():
        try:
            plugin = _coerce(ep.load(), name)
        except Exception as exc:  # a broken third-party plugin must not stop every agent
            log.warning("plugin entry point %r failed to load and is skipped: %s", name, exc)
            continue
        if plugin.autoload:
            found.setdefault(plugin.name, plugin)
    for ref in character_refs:
        if str(ref).startswith("@"):  # an npm package from an imported ElizaOS character
            log.warning("plugin %r is an ElizaOS (npm) plugin; Carrier skips it", ref)
            continue
        plugin = load_plugin(str(ref))
        found[plugin.name] = plugin
    for plugin in extra:
        found[plugin.name] = plugin
    return list(found.values())


@dataclass
class PluginInfo:
    """What `carrier plugins list` shows about one plugin."""

    name: str
    origin: str  # "entry point NAME (module:attr)", "character", "built-in"
    autoload: bool
    actions: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    evaluators: list[str] = field(default_factory=list)
    description: str = ""
    error: str | None = None


def _info(plugin: Plugin, origin: str) -> PluginInfo:
    return PluginInfo(
        name=plugin.name,
        origin=origin,
        autoload=plugin.autoload,
        actions=[a.name for a in plugin.actions],
        providers=[p.name for p in plugin.providers],
        evaluators=[e.name for e in plugin.evaluators],
        description=plugin.description,
    )


def describe_installed() -> list[PluginInfo]:
    """Every `carrier.plugins` entry point, loaded (load failures are reported, not raised)."""
    infos: list[PluginInfo] = []
    for name, ep in sorted(entry_points().items()):
        origin = f"entry point {name} ({ep.value})"
        try:
            infos.append(_info(_coerce(ep.load(), name), origin))
        except Exception as exc:
            infos.append(
                PluginInfo(
                    name=name, origin=origin, autoload=False, error=f"{type(exc).__name__}: {exc}"
                )
            )
    return infos


def describe_for_character(character_refs: Sequence[str]) -> list[PluginInfo]:
    """What a runtime for a character with these `plugins:` loads, built-ins first."""
    from carrier_cli.runtime.builtin_actions import builtin_actions
    from carrier_cli.runtime.evaluators import FactEvaluator

    builtin = Plugin(
        name="builtin",
        description="Always loaded.",
        actions=builtin_actions(),
        evaluators=[FactEvaluator()],
    )
    infos = [_info(builtin, "built-in")]
    from_character = {
        load_plugin(str(ref)).name for ref in character_refs if not str(ref).startswith("@")
    }
    for plugin in discover_plugins(character_refs):
        origin = "character plugins:" if plugin.name in from_character else "entry point (autoload)"
        infos.append(_info(plugin, origin))
    return infos
