"""What the API core tests share: a fake model server per module, `carrier api-keys` run as
the operator would (a subprocess with the server's CARRIER_HOME), and the operations the
running server documents (so a test of a cross-cutting rule can pick a route that has a
JSON body, whichever helper added it)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.support.api_server import ROOT, ServeProcess, serve_env, start_serve, write_character
from tests.support.model_server import ModelServerProcess, start_server_process


@contextmanager
def model_server() -> Iterator[ModelServerProcess]:
    server = start_server_process()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)


@contextmanager
def serving(
    root: Path,
    model: ModelServerProcess,
    *,
    env: dict[str, str] | None = None,
    character_extra: str = "",
) -> Iterator[ServeProcess]:
    """A `carrier serve` over one character in `root/home`, stopped afterwards;
    `character_extra`: more YAML for the character (its `plugins:`, say)."""
    root.mkdir(parents=True, exist_ok=True)
    character = write_character(root / "carrier.yaml", extra=character_extra)
    served = start_serve(root / "home", model.url, characters=[character], env=env)
    try:
        yield served
    finally:
        if served.process.poll() is None:
            served.terminate()


def carrier(home: Path, model_url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """`carrier ARGS` in CARRIER_HOME=home: the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        cwd=home.parent,
        env=serve_env(home, model_url, env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def create_key(served: ServeProcess, model: ModelServerProcess, name: str, scope: str) -> str:
    done = carrier(served.home, model.url, "api-keys", "create", name, "--scope", scope)
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip().splitlines()[-1])


def operations(url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation in the server's /openapi.json."""
    document = httpx.get(url + "/openapi.json", timeout=10).json()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def json_body_route(url: str, agent: str) -> tuple[str, str] | None:
    """(METHOD, concrete path) of an operation taking a JSON body, or None while no route
    has one. Path parameters named `agent` get the served agent; others a dummy."""
    for method, path, operation in operations(url):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        concrete = path.replace("{agent}", agent)
        while "{" in concrete:
            start, end = concrete.index("{"), concrete.index("}")
            concrete = concrete[:start] + "x" + concrete[end + 1 :]
        return method, concrete
    return None


def scoped_route(url: str, agent: str, scope: str) -> tuple[str, str] | None:
    """An operation needing `scope` (x-required-scope in the OpenAPI), or None."""
    for method, path, operation in operations(url):
        if operation.get("x-required-scope") == scope:
            return method, path.replace("{agent}", agent).replace("{", "").replace("}", "")
    return None


__all__ = ["ROOT"]
