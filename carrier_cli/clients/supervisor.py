"""`carrier run` as a library: several characters × several clients in one process.

Every client is a coroutine `client(runtime, settings, stop_event)` that runs until
`stop_event` is set and then finishes its in-flight work within settings.shutdown_grace.
The supervisor owns the signals (SIGINT/SIGTERM set the event, a second one cancels), the
runtimes' lifetimes, and the rule that a client failing to start stops the whole process
with that client's error, so the operator sees one clear message and exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from carrier_cli.config import Settings
from carrier_cli.errors import InputError

log = logging.getLogger("carrier_cli.run")

ClientFunction = Callable[[Any, Settings, asyncio.Event], Coroutine[Any, Any, None]]
RuntimeFactory = Callable[[Any, Settings], Awaitable[Any]]
# A service spans every runtime of the process (the HTTP API): `service(runtimes, settings,
# stop_event)`, supervised like a client.
ServiceFunction = Callable[[Sequence[Any], Settings, asyncio.Event], Coroutine[Any, Any, None]]

# How long past the grace period a client may take to disconnect before it is cancelled.
_CLOSE_MARGIN = 5.0


Preflight = Callable[[Sequence[Any], Settings], Awaitable[None] | None]


def load_client(name: str, registry: Mapping[str, str]) -> ClientFunction:
    """Import the client's coroutine function ("module:function") only when it is used."""
    return _load(name, registry)[0]


def _load(name: str, registry: Mapping[str, str]) -> tuple[ClientFunction, Preflight | None]:
    """The client function and the module's optional `preflight(characters, settings)`
    (plain or async), which checks configuration and credentials before the slow part,
    opening runtimes, so the commonest mistakes fail in a second."""
    if name not in registry:
        raise InputError(
            f"Unknown client {name!r} given to --client.",
            hint=f"Available clients: {', '.join(sorted(registry))}.",
        )
    target = registry[name]
    module_name, _, attr = target.partition(":")
    # A third-party client (a `carrier.clients` entry point) is not fixed by reinstalling Carrier.
    own = module_name.startswith("carrier_cli.")
    reinstall = "Reinstall Carrier" if own else f"Reinstall the package that provides it ({target})"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"The {name} client is not available in this installation ({exc}).",
            hint=f"{reinstall}, or run without that --client.",
        ) from None
    except Exception as exc:  # a broken client package: one paragraph, not a traceback
        raise InputError(
            f"The {name} client failed to import ({type(exc).__name__}: {exc}).",
            hint=f"{reinstall}, or run without that --client.",
        ) from None
    func: ClientFunction | None = getattr(module, attr, None) if attr else None
    if not callable(func):
        raise InputError(
            f"The {name} client ({target}) does not name a client function in {module_name}.",
            hint="A client entry point is 'module:function', the function being "
            "`async def client(runtime, settings, stop_event)`.",
        )
    preflight: Preflight | None = getattr(module, "preflight", None)
    return func, preflight


async def _default_runtime(character: Any, settings: Settings) -> Any:
    from carrier_cli.runtime.agent import AgentRuntime

    return await AgentRuntime.create(character, settings)


async def run_clients(
    client_names: Sequence[str],
    character_specs: Sequence[str | None],
    settings: Settings,
    registry: Mapping[str, str],
    *,
    runtime_factory: RuntimeFactory | None = None,
    stop_event: asyncio.Event | None = None,
    services: Sequence[tuple[str, ServiceFunction]] = (),
) -> None:
    """Run every client for every character, and each named service once over all the
    runtimes, until SIGINT/SIGTERM (or `stop_event`)."""
    from carrier_cli.character import resolve_character

    names = list(dict.fromkeys(client_names))  # --client discord --client discord: once
    loaded = {name: _load(name, registry) for name in names}
    clients = {name: func for name, (func, _) in loaded.items()}
    characters = [resolve_character(spec) for spec in dict.fromkeys(character_specs)]
    seen: dict[str, str] = {}
    for character in characters:
        if character.name in seen:
            raise InputError(
                f"Character {character.name!r} is given twice to --character "
                f"({seen[character.name]} and {character.source_path or character.name}).",
                hint="Give each character once.",
            )
        seen[character.name] = str(character.source_path or character.name)
    for _, preflight in loaded.values():
        if preflight is not None:
            checked = preflight(characters, settings)
            if checked is not None:
                await checked

    stop = stop_event or asyncio.Event()
    factory = runtime_factory or _default_runtime
    runtimes: list[Any] = []
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.warning(
                "Received %s: stopping (grace period %.0fs)", sig.name, settings.shutdown_grace
            )
            stop.set()
        else:
            log.warning("Received %s again: cancelling now", sig.name)
            for task in tasks:
                task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        for character in characters:
            runtimes.append(await factory(character, settings))
        for runtime in runtimes:
            for name, client in clients.items():
                task = asyncio.create_task(
                    client(runtime, settings, stop), name=f"{name}:{runtime.character.name}"
                )
                tasks.append(task)
        for name, service in services:
            tasks.append(asyncio.create_task(service(runtimes, settings, stop), name=name))
        await _supervise(tasks, stop, settings.shutdown_grace + _CLOSE_MARGIN)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for runtime in runtimes:
            try:
                await runtime.aclose()
            except Exception as exc:  # closing must not hide the real outcome
                log.warning("Closing the runtime of %s failed: %s", runtime.character.name, exc)


async def _supervise(tasks: list[asyncio.Task[None]], stop: asyncio.Event, budget: float) -> None:
    """Wait until stopped or a client fails; then give the rest `budget` seconds."""
    stopping = asyncio.create_task(stop.wait())
    failure: BaseException | None = None
    try:
        pending: set[asyncio.Task[Any]] = set(tasks)
        while pending and not stop.is_set():
            done, pending = await asyncio.wait(
                pending | {stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stopping)
            for task in done:
                if task is stopping or task.cancelled():
                    continue
                if task.exception() is not None and failure is None:
                    failure = task.exception()
                    log.debug("Client %s failed; stopping the others", task.get_name())
                    stop.set()
        if pending:
            _, late = await asyncio.wait(pending, timeout=budget)
            for task in late:
                log.warning("Client %s did not stop in time; cancelling it", task.get_name())
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=_CLOSE_MARGIN)
        for task in tasks:
            if failure is None and task.done() and not task.cancelled() and task.exception():
                failure = task.exception()
    finally:
        stopping.cancel()
    if failure is not None:
        raise failure
