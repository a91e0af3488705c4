"""Two real `carrier serve` processes on one PostgreSQL and one Redis share their caches:
a fact stored through server A (POST memories) is in the very next reply prompt of a turn
on server B, although B had just cached that person's facts (60 s TTL) without it; and an
API key's rate-limit budget is one across both (429 from B once it was spent on A)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.clients.api.serve_support import carrier, model_server
from tests.support.api_server import ServeProcess, start_serve, write_character
from tests.support.model_server import ModelServerProcess
from tests.support.postgres import _run, with_database
from tests.support.redis_server import RedisServer, start_redis

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.postgres]

AGENT = "/v1/agents/carrier"
RATE = 8  # requests per minute per key, on both servers together
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_env(postgres_admin_url: str, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    name = f"carrier_cache_{uuid.uuid4().hex[:12]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    yield {
        "CARRIER_DATABASE_URL": with_database(postgres_admin_url, name),
        "REDIS_URL": redis_server.url,
        "CARRIER_API_RATE_LIMIT": str(RATE),
    }
    _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
    model: ModelServerProcess,
    cluster_env: dict[str, str],
) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    root = tmp_path_factory.mktemp("cluster")
    character = write_character(
        root / "carrier.yaml", extra="settings:\n  fact_interval: 1000000\n"
    )
    started: list[ServeProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: A makes the first key, B shares it
            started.append(
                start_serve(root / name, model.url, characters=[character], env=cluster_env)
            )
        a, b = started
        assert a.key is not None and b.key is None
        b.key = a.key  # the keys are in the shared database
        yield a, b
    finally:
        for process in started:
            if process.process.poll() is None:
                process.terminate()


def post_message(server: ServeProcess, room: str, sender: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{AGENT}/messages",
        json={"room": room, "text": text, "sender": {"id": sender, "name": "Ada"}},
        headers=server.headers(),
        timeout=60,
    )


def test_a_fact_stored_on_one_server_is_in_the_next_prompt_on_the_other(
    servers: tuple[ServeProcess, ServeProcess], model: ModelServerProcess
) -> None:
    a, b = servers
    sender, room = f"ada-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    fact = "Ada keeps a tortoise named Hypatia."
    model.push("Hello Ada!")
    first = post_message(b, room, sender, "Good morning")
    assert first.status_code == 200, first.text  # B has now cached Ada's (no) facts
    model.reset()
    stored = httpx.post(
        f"{a.url}{AGENT}/memories",
        json={"kind": "fact", "text": fact, "sender": sender},
        headers=a.headers(),
        timeout=60,
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["memory"]["entity_id"] is not None
    model.push("Say hi to Hypatia!")
    second = post_message(b, room, sender, "What do you remember?")
    assert second.status_code == 200, second.text
    prompts = [r.prompt_text for r in model.requests(CHAT)]
    assert any(f"# Facts about Ada\n- {fact}" in p for p in prompts), prompts


def test_a_fact_about_a_person_is_refused_for_a_document(
    servers: tuple[ServeProcess, ServeProcess],
) -> None:
    a, _ = servers
    r = httpx.post(
        f"{a.url}{AGENT}/memories",
        json={"kind": "document", "text": "Opening hours", "sender": "ada"},
        headers=a.headers(),
        timeout=60,
    )
    assert r.status_code == 422, r.text
    assert "`sender`" in r.json()["error"]["message"]


def test_the_rate_limit_is_shared_by_both_servers(
    servers: tuple[ServeProcess, ServeProcess],
    model: ModelServerProcess,
    cluster_env: dict[str, str],
) -> None:
    a, b = servers
    made = carrier(
        a.home, model.url, "api-keys", "create", "shared-budget", "--scope", "read", env=cluster_env
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(RATE - 2):
        r = httpx.get(f"{a.url}/v1/agents", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
    left = [httpx.get(f"{b.url}/v1/agents", headers=headers, timeout=30) for _ in range(2)]
    assert [r.status_code for r in left] == [200, 200]
    assert left[-1].headers["RateLimit-Remaining"] == "0"
    refused = httpx.get(f"{b.url}/v1/agents", headers=headers, timeout=30)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    again = httpx.get(f"{a.url}/v1/agents", headers=headers, timeout=30)
    assert again.status_code == 429  # and on A too: one bucket


def test_no_secret_reaches_the_logs(servers: tuple[ServeProcess, ServeProcess]) -> None:
    for process in servers:
        assert process.key is not None and process.key not in process.stderr


def test_redis_absent_at_start_is_a_clear_error_and_exit_1(
    tmp_path: Path, model: ModelServerProcess, cluster_env: dict[str, str]
) -> None:
    from tests.support.redis_server import free_port

    character = write_character(tmp_path / "carrier.yaml")
    env = {**cluster_env, "REDIS_URL": f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"}
    process = start_serve(tmp_path / "home", model.url, characters=[character], env=env, wait=False)
    assert process.process.wait(60) == 1
    process._drain()
    said = process.stdout + process.stderr
    assert "Could not reach Redis at redis://:***@127.0.0.1" in said, said
    assert "hunter2-secret" not in said
    assert "Traceback" not in said
