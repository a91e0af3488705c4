"""/readyz tells a load balancer the truth when the database goes away under a running
`carrier serve`: 503 with `database: unreachable` (and /healthz still 200, the process
is alive), on SQLite (the file deleted) and on PostgreSQL (the database dropped)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest

from tests.clients.api.serve_support import model_server, serving
from tests.support.model_server import ModelServerProcess
from tests.support.postgres import _run

pytestmark = [pytest.mark.slow, pytest.mark.service]


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


def _ready(url: str) -> httpx.Response:
    return httpx.get(url + "/readyz", timeout=15)


def _wait_unready(url: str, timeout: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout
    response = _ready(url)
    while response.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        response = _ready(url)
    return response


def _check_unready(url: str) -> None:
    response = _wait_unready(url)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "unreachable"
    assert body["checks"]["models"] == "ok"
    assert httpx.get(url + "/healthz").status_code == 200


def test_readyz_is_503_when_the_sqlite_file_is_gone(
    tmp_path: Path, model: ModelServerProcess
) -> None:
    db = tmp_path / "data" / "memory.db"
    db.parent.mkdir()
    with serving(tmp_path, model, env={"DATABASE_URL": f"sqlite:///{db}"}) as served:
        assert _ready(served.url).status_code == 200
        for path in db.parent.iterdir():  # the file and its -wal / -shm
            path.unlink()
        _check_unready(served.url)
        deadline = time.monotonic() + 5
        while "/readyz: the database did not answer" not in served.stderr:
            assert time.monotonic() < deadline, served.stderr
            time.sleep(0.1)


@pytest.mark.postgres
def test_readyz_is_503_when_the_postgres_database_is_dropped(
    tmp_path: Path,
    model: ModelServerProcess,
    pg_database_factory: Callable[[], str],
    postgres_admin_url: str,
) -> None:
    url = pg_database_factory()
    name = urlsplit(url).path.lstrip("/")
    with serving(tmp_path, model, env={"DATABASE_URL": url}) as served:
        assert _ready(served.url).status_code == 200
        _run(postgres_admin_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        _check_unready(served.url)
        # the API's own requests keep answering in the one error shape, not a 500
        agents = httpx.get(served.url + "/v1/agents", headers=served.headers())
        assert agents.status_code == 503, agents.text
        assert agents.json()["error"]["code"] == "unavailable"
