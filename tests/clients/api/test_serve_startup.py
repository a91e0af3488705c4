"""How `carrier serve` starts and stops, as a process: the first key's banner on a fresh
home (and none on the next start), refusals with one paragraph and the right exit code
(port in use 1, --no-auth on a public address 2, an unknown --client 2, none of which
leaves a key behind), and SIGTERM draining the request in flight."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.serve_support import carrier, model_server, operations
from tests.support.api_server import ServeProcess, start_serve, write_character
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


def _one_paragraph(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, stderr


def test_a_fresh_home_prints_a_key_and_a_curl_line_once(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    character = write_character(tmp_path / "carrier.yaml")
    first = start_serve(tmp_path / "home", model.url, characters=[character])
    try:
        assert first.key, first.stdout
        curl = next(line for line in first.stdout_lines if "curl" in line)
        assert f"Authorization: Bearer {first.key}" in curl
        assert f"{first.url}/v1/agents/Carrier/messages" in curl
        assert "Content-Type: application/json" in curl
        assert httpx.get(first.url + "/v1/agents", headers=first.headers()).status_code == 200
    finally:
        assert first.terminate() == 0
    listed = carrier(tmp_path / "home", model.url, "api-keys", "list")
    assert "admin" in listed.stdout and first.key not in listed.stdout
    second = start_serve(tmp_path / "home", model.url, characters=[character])
    try:
        assert second.key is None
        assert "crr_" not in second.stdout and "curl" not in second.stdout
        # the key printed the first time still works
        assert httpx.get(second.url + "/v1/agents", headers=first.headers()).status_code == 200
    finally:
        second.terminate()


def test_a_port_in_use_is_exit_1_with_one_paragraph(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        character = write_character(tmp_path / "carrier.yaml")
        done = carrier(
            tmp_path / "home",
            model.url,
            "serve",
            "--port",
            str(port),
            "--character",
            str(character),
        )
    assert done.returncode == 1, done.stderr
    _one_paragraph(done.stderr)
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


def test_no_auth_on_a_public_address_is_refused_with_exit_2(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    done = carrier(tmp_path / "home", model.url, "serve", "--no-auth", "--host", "0.0.0.0")
    assert done.returncode == 2, done.stderr
    _one_paragraph(done.stderr)
    assert "--no-auth" in done.stderr and "0.0.0.0" in done.stderr


def test_an_unknown_client_is_exit_2_and_creates_no_key(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    character = write_character(tmp_path / "carrier.yaml")
    home = tmp_path / "home"
    done = carrier(
        home,
        model.url,
        "serve",
        "--port",
        "0",
        "--client",
        "telepathy",
        "--character",
        str(character),
    )
    assert done.returncode == 2, done.stderr
    _one_paragraph(done.stderr)
    assert "telepathy" in done.stderr and "discord" in done.stderr
    assert "crr_" not in done.stdout + done.stderr
    # no key was stored without being shown: the next start still prints one
    served = start_serve(home, model.url, characters=[character])
    try:
        assert served.key, served.stdout
    finally:
        served.terminate()


def test_a_bad_character_creates_no_key(tmp_path: Path, model: ModelServerProcess) -> None:
    home = tmp_path / "home"
    done = carrier(
        home, model.url, "serve", "--port", "0", "--character", str(tmp_path / "no.yaml")
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    listed = carrier(home, model.url, "api-keys", "list")
    assert "admin" not in listed.stdout, listed.stdout


def test_no_auth_on_loopback_answers_without_a_key(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    character = write_character(tmp_path / "carrier.yaml")
    served = start_serve(tmp_path / "home", model.url, characters=[character], args=["--no-auth"])
    try:
        assert served.key is None
        assert httpx.get(served.url + "/v1/agents").status_code == 200
    finally:
        served.terminate()


def _messages_route(url: str) -> str | None:
    for method, path, _ in operations(url):
        if method == "POST" and path == "/v1/agents/{agent}/messages":
            return path
    return None


def _until(condition: Callable[[], object], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(0.05)


def _until_refused(served: ServeProcess, within: float = 10.0) -> None:
    """Once SIGTERM is in, the listener closes: new connections are refused while the
    process drains (polled, not slept on: a busy machine takes its time to close it)."""

    def refused() -> bool:
        try:
            httpx.get(served.url + "/healthz", timeout=2)
        except httpx.ConnectError:
            return True
        assert served.process.poll() is None, "the server exited instead of draining"
        return False

    _until(refused, "the server to refuse new connections", within)


def test_sigterm_drains_the_request_in_flight_and_refuses_new_ones(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    character = write_character(tmp_path / "carrier.yaml")
    served = start_serve(
        tmp_path / "home", model.url, characters=[character], env={"CARRIER_SHUTDOWN_GRACE": "10"}
    )
    try:
        if _messages_route(served.url) is None:
            pytest.skip("POST /v1/agents/{agent}/messages (the slow request) is not merged yet")
        model.configure(latency=2.0)
        result: dict[str, Any] = {}

        def slow() -> None:
            try:
                result["response"] = httpx.post(
                    served.url + "/v1/agents/carrier/messages",
                    json={"room": "drain", "text": "hi"},
                    headers=served.headers(),
                    timeout=30,
                )
            except Exception as exc:
                result["error"] = exc

        asked = len(model.requests("/v1/chat/completions"))
        thread = threading.Thread(target=slow)
        thread.start()
        _until(
            lambda: len(model.requests("/v1/chat/completions")) > asked,
            "the request to reach the model",
        )
        served.process.send_signal(signal.SIGTERM)
        _until_refused(served)
        thread.join(30)
        assert "error" not in result, result
        assert result["response"].status_code == 200, result["response"].text
        assert served.process.wait(30) == 0
    finally:
        model.configure(latency=0)
        if served.process.poll() is None:
            served.terminate()


def _hold_table_lock(
    url: str, table: str, locked: threading.Event, release: threading.Event
) -> None:
    """Hold ACCESS EXCLUSIVE on `table` until `release`: any request reading it waits."""
    import asyncio

    import asyncpg

    async def hold() -> None:
        conn = await asyncpg.connect("postgresql://" + url.partition("://")[2])
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
            await transaction.commit()
        finally:
            await conn.close()

    asyncio.run(hold())


def _lock_waiters(url: str) -> int:
    """Backends of this database waiting on a lock (the request's key lookup)."""
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect("postgresql://" + url.partition("://")[2])
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.mark.postgres
def test_sigterm_drains_a_request_waiting_on_the_database(
    tmp_path: Path, model: ModelServerProcess, postgres_url: str
) -> None:
    """A request in flight (its key lookup waits on a table lock) when SIGTERM arrives
    still completes with 200; a new connection is refused meanwhile; the process exits 0."""
    character = write_character(tmp_path / "carrier.yaml")
    served = start_serve(
        tmp_path / "home",
        model.url,
        characters=[character],
        env={"DATABASE_URL": postgres_url, "CARRIER_SHUTDOWN_GRACE": "10"},
    )
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=_hold_table_lock, args=(postgres_url, "api_keys", locked, release), daemon=True
    )
    result: dict[str, Any] = {}

    def in_flight() -> None:
        try:
            result["response"] = httpx.get(
                served.url + "/v1/agents", headers=served.headers(), timeout=30
            )
        except Exception as exc:
            result["error"] = exc

    try:
        holder.start()
        assert locked.wait(15)
        request = threading.Thread(target=in_flight)
        request.start()
        _until(lambda: _lock_waiters(postgres_url) > 0, "the request to wait on the lock")
        assert request.is_alive(), result
        served.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _until_refused(served)
        assert served.process.poll() is None  # still draining
        # past uvicorn's shortest grace (1 s), well within shutdown_grace (10 s)
        time.sleep(max(0.0, signalled + 2.5 - time.monotonic()))
        assert request.is_alive() and served.process.poll() is None
        release.set()
        request.join(30)
        assert "error" not in result, result
        assert result["response"].status_code == 200, result["response"].text
        assert served.process.wait(30) == 0
    finally:
        release.set()
        holder.join(15)
        if served.process.poll() is None:
            served.terminate()
