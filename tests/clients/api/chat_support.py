"""What the messages, rooms and memories tests share: a real `carrier serve` per module
(SQLite, and PostgreSQL for the tests that run on both), a fake model server, keys of
each scope made with the real `carrier api-keys create`, and an SSE parser.

Import the fixtures into a test module (`from tests.clients.api.chat_support import ...`)
so that pytest finds them there.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.model_server import ModelServerProcess, start_server_process

# No background fact extraction: every model call a test counts is a reply.
CHARACTER_EXTRA = "settings:\n  fact_interval: 1000000\n"
SERVE_ENV = {"CARRIER_API_SSE_PING_SECONDS": "0.3", "CARRIER_API_RATE_LIMIT": "0"}
CHAT = "/v1/chat/completions"


@dataclass
class Served:
    """A running server and what tests need with it."""

    process: ServeProcess
    model: ModelServerProcess
    env: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)  # scope -> raw key

    @property
    def url(self) -> str:
        return self.process.url

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(scope)}"}

    def key(self, scope: str) -> str:
        if scope == "admin":
            assert self.process.key
            return self.process.key
        if scope not in self.keys:
            self.keys[scope] = create_key(self, f"test-{scope}", scope)
        return self.keys[scope]

    def chat_calls(self) -> int:
        return len(self.model.requests(CHAT))


def create_key(served: Served, name: str, scope: str) -> str:
    """`carrier api-keys create NAME --scope SCOPE` in the server's home: the raw key."""
    result = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "api-keys", "create", name, "--scope", scope],
        env=serve_env(served.process.home, served.model.url, served.env),
        cwd=served.process.home.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def model_process() -> Iterator[ModelServerProcess]:
    server = start_server_process()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)


@contextlib.contextmanager
def serving(
    root: Path, model: ModelServerProcess, env: dict[str, str] | None = None, character: str = ""
) -> Iterator[Served]:
    """`character`: more YAML for the character (e.g. its `plugins:`)."""
    full = {**SERVE_ENV, **(env or {})}
    character_file = write_character(root / "carrier.yaml", extra=CHARACTER_EXTRA + character)
    process = start_serve(root / "home", model.url, characters=[character_file], env=full)
    try:
        yield Served(process, model, full)
    finally:
        process.terminate()


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_process() as server:
        yield server


@pytest.fixture(scope="module")
def served(model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`carrier serve` on SQLite, one per test module."""
    with serving(tmp_path_factory.mktemp("serve-sqlite"), model) as server:
        yield server


@pytest.fixture(scope="module")
def pg_served(
    model: ModelServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
) -> Iterator[Served]:
    """`carrier serve` on a fresh PostgreSQL database, one per test module."""
    from tests.support.postgres import _run, with_database

    name = f"carrier_api_{uuid.uuid4().hex[:12]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    env = {"CARRIER_DATABASE_URL": with_database(postgres_admin_url, name)}
    try:
        with serving(tmp_path_factory.mktemp("serve-pg"), model, env) as server:
            yield server
    finally:
        with contextlib.suppress(Exception):
            _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_served(request: pytest.FixtureRequest) -> Served:
    """The module's server on SQLite, then on PostgreSQL."""
    name = "served" if request.param == "sqlite" else "pg_served"
    server: Served = request.getfixturevalue(name)
    return server


@dataclass
class Event:
    id: str | None
    name: str
    data: Any


@dataclass
class Stream:
    events: list[Event]
    pings: int
    pings_before_first_event: int


def parse_sse(text: str) -> Stream:
    """Events (`id:`, `event:`, `data:` lines ended by a blank line) and `:` comments."""
    events: list[Event] = []
    pings = before = 0
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line:
                continue
            if line.startswith(":"):
                pings += 1
                if not events:
                    before += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "event" in fields or "data" in fields:
            data = json.loads(fields["data"]) if "data" in fields else None
            events.append(Event(fields.get("id"), fields.get("event", "message"), data))
    return Stream(events, pings, before)


def unique(label: str) -> str:
    """A room or text no other test uses (the module's server is shared)."""
    return f"{label}-{uuid.uuid4().hex[:8]}"
