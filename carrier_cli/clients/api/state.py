"""What the API's routes share: the runtimes (one per character), the store they share, the
key service and the settings. One `ApiState` per server, on `app.state.carrier`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.api.errors import not_found

if TYPE_CHECKING:
    from carrier_cli.auth.keys import ApiKeys
    from carrier_cli.clients.api.options import ApiOptions
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.runtime.agent import AgentRuntime


class AgentDirectory:
    """The served runtimes, found by character id or name (case-insensitive)."""

    def __init__(self, runtimes: list[AgentRuntime] | None = None) -> None:
        self._runtimes: list[AgentRuntime] = []
        for runtime in runtimes or []:
            self.add(runtime)

    def add(self, runtime: AgentRuntime) -> None:
        self._runtimes.append(runtime)

    def __iter__(self) -> Any:
        return iter(list(self._runtimes))

    def __len__(self) -> int:
        return len(self._runtimes)

    def find(self, ref: str) -> AgentRuntime | None:
        wanted = ref.strip().casefold()
        for runtime in self._runtimes:
            if str(runtime.agent_id) == wanted or runtime.character.name.casefold() == wanted:
                return runtime
        try:
            as_id = uuid.UUID(ref)
        except ValueError:
            return None
        return next((r for r in self._runtimes if r.agent_id == as_id), None)

    def get(self, ref: str) -> AgentRuntime:
        """The runtime for `{agent}` in a path, or a 404 naming the agents served."""
        runtime = self.find(ref)
        if runtime is None:
            names = ", ".join(r.character.name for r in self._runtimes) or "none"
            raise not_found(
                f"Agent {ref!r}",
                hint=f"Use a served character's name or id ({names}); GET /v1/agents lists them.",
            )
        return runtime


@dataclass
class ApiState:
    options: ApiOptions
    store: MemoryStore
    agents: AgentDirectory
    keys: ApiKeys | None  # None: --no-auth on loopback, every request is admin
    clients: list[str] = field(default_factory=list)  # other clients run in this process
    extras: dict[str, Any] = field(default_factory=dict)  # per-feature state (hub, limiter)
