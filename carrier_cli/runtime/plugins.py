"""The Plugin bundle and plugin discovery (the protocols live in `runtime.context`).

Plugins come from three places, loaded in this order:
1. Carrier's own (`BUILTIN_PLUGINS`: the REPLY/IGNORE/NONE/CONTINUE actions and the fact
   evaluator), through the same entry-point loading as installed packages, always first so
   their action names win on clashes (as simonw/llm registers its default plugins through
   the hook third parties use). They are not registered in pyproject's `carrier.plugins`
   group: they would then be found twice, and `carrier plugins list` would show them as
   installed third-party entry points.
2. The `carrier.plugins` entry-point group (installed packages; loaded for every character
   unless the plugin sets `autoload=False`).
3. The `plugins:` list of a character (module paths, `module:attribute`, or entry-point
   names). Listing a plugin in the character is how an opt-in plugin such as the bundled
   example is switched on.

`with_builtins(plugins)` is the one place that puts Carrier's own plugins in front of the
others; the runtime and `carrier plugins list --character` both go through it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import InputError
from carrier_cli.runtime.context import (
    Action,
    ActionExample,
    Evaluator,
    Provider,
    ProviderResult,
    TurnContext,
    TurnServices,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionExample",
    "Evaluator",
    "Plugin",
    "PluginInfo",
    "Provider",
    "ProviderResult",
    "TurnContext",
    "TurnServices",
    "builtin_entry_points",
    "builtin_plugins",
    "describe_for_character",
    "describe_installed",
    "discover_plugins",
    "entry_points",
    "load_plugin",
    "normalize_action_name",
    "with_builtins",
]

log = logging.getLogger("carrier.runtime.plugins")

ENTRY_POINT_GROUP = "carrier.plugins"

# Carrier's own plugins as (entry-point name, "module:attribute"), loaded first, in order.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("builtin", "carrier_cli.runtime.builtin_plugin:builtin_plugin"),
)


@dataclass
class Plugin:
    """A named bundle of actions, providers and evaluators: what an entry point, a
    character's `plugins:` entry or `AgentRuntime.create(plugins=...)` provides."""

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


def builtin_entry_points() -> dict[str, EntryPoint]:
    """Carrier's own plugins as entry points of the `carrier.plugins` group, so they are
    loaded exactly as an installed package's are (and nothing special-cases them later)."""
    from importlib.metadata import EntryPoint

    return {
        name: EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
        for name, value in BUILTIN_PLUGINS
    }


def builtin_plugins() -> list[Plugin]:
    """Carrier's own plugins, fresh instances each call (a runtime may tune its evaluators).
    Unlike a third-party entry point, one that fails to load is a bug and raises."""
    return [_coerce(ep.load(), name) for name, ep in builtin_entry_points().items()]


def with_builtins(plugins: Sequence[Plugin]) -> list[Plugin]:
    """What a runtime runs, in order: Carrier's own plugins first, then `plugins`. Order
    matters: earlier action names win on clashes, and evaluators run in this order."""
    return [*builtin_plugins(), *plugins]


def discover_plugins(
    character_refs: Sequence[str] = (),
    extra: Sequence[Plugin] = (),
    *,
    loader: Callable[[], dict[str, Any]] = entry_points,
) -> list[Plugin]:
    """Autoloaded entry-point plugins, then the character's, then `extra`; one per name.
    Carrier's own plugins are not among them: `with_builtins` puts those first."""
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
    builtin = len(BUILTIN_PLUGINS)
    from_character = {
        load_plugin(str(ref)).name for ref in character_refs if not str(ref).startswith("@")
    }
    infos: list[PluginInfo] = []
    for index, plugin in enumerate(with_builtins(discover_plugins(character_refs))):
        if index < builtin:
            origin = "built-in"
        elif plugin.name in from_character:
            origin = "character plugins:"
        else:
            origin = "entry point (autoload)"
        infos.append(_info(plugin, origin))
    return infos
