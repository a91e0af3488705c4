"""The limits middleware, the error shape and the OpenAPI rules on the real app under real
uvicorn, with two routes of this test's own: a JSON body (admin scope) and a form.

`carrier serve` has no route with a body until the messages/memories routes land, so the
body rules (streamed 413, 415, bad JSON 422, 403 for a narrower scope) are exercised here
through `create_app` exactly as `carrier serve` builds it, plus a test router; the
process-level tests (test_serve_core.py) repeat them against `carrier serve` itself as
soon as it has such a route.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import APIRouter, Depends, Form
from pydantic import BaseModel

from carrier_cli.clients.api.auth import require

pytestmark = [pytest.mark.slow, pytest.mark.service]

LIMIT = 2048
ORIGIN = "https://app.example"


class EchoBody(BaseModel):
    text: str
    count: int = 1


router = APIRouter(prefix="/v1/test", tags=["test"])


@router.post("/echo", summary="Echo a text")
async def echo(body: EchoBody, _: Any = Depends(require("admin"))) -> dict[str, Any]:
    return {"text": body.text, "count": body.count}


@router.post("/form", summary="Read a form")
async def form(name: str = Form(...), _: Any = Depends(require("admin"))) -> dict[str, str]:
    return {"name": name}


@dataclass
class AppServer:
    url: str
    admin: str
    reader: str

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin}", **extra}


def _serve(db: Path, ready: queue.Queue[Any], stop: threading.Event) -> None:
    async def main() -> None:
        import uvicorn

        from carrier_cli.auth.keys import ApiKeys
        from carrier_cli.clients.api.app import create_app
        from carrier_cli.clients.api.options import ApiOptions
        from carrier_cli.clients.api.server import bind
        from carrier_cli.clients.api.state import AgentDirectory, ApiState
        from carrier_cli.memory.store import MemoryStore

        store = await MemoryStore.open(f"sqlite:///{db}")
        try:
            keys = ApiKeys(store)
            admin, _ = await keys.create("admin", "admin")
            reader, _ = await keys.create("reader", "read")
            options = ApiOptions(max_body_bytes=LIMIT, rate_limit=0, cors_origins=(ORIGIN,))
            state = ApiState(options=options, store=store, agents=AgentDirectory([]), keys=keys)
            app = create_app(state)
            app.include_router(router)
            sock = bind("127.0.0.1", 0)
            config = uvicorn.Config(app, log_config=None, lifespan="off")
            server = uvicorn.Server(config)
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            ready.put(AppServer(f"http://127.0.0.1:{sock.getsockname()[1]}", admin, reader))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.should_exit = True
            await serving
        finally:
            await store.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # surfaced to the fixture rather than lost in the thread
        ready.put(exc)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    ready: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    db = tmp_path_factory.mktemp("limits-app") / "memory.db"
    thread = threading.Thread(target=_serve, args=(db, ready, stop), daemon=True)
    thread.start()
    started = ready.get(timeout=60)
    if isinstance(started, BaseException):
        raise started
    try:
        yield started
    finally:
        stop.set()
        thread.join(20)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return dict(error)


def test_a_json_body_within_the_limit_is_read(app_server: AppServer) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/echo",
        json={"text": "hi", "count": 2},
        headers=app_server.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"text": "hi", "count": 2}


def test_a_body_over_the_limit_with_content_length_is_413(app_server: AppServer) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/echo",
        content=b'{"text": "' + b"x" * (LIMIT * 2) + b'"}',
        headers=app_server.headers(**{"Content-Type": "application/json"}),
    )
    error = _error(response, 413, "too_large")
    assert f"{LIMIT:,} bytes" in error["message"]
    assert "api_max_body_bytes" in error["hint"]


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit(app_server: AppServer) -> None:
    """An endless body without Content-Length: a server reading it without bound would
    never answer (the test would time out); it must answer 413 and hang up."""
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"text": "'
        while sent < 64 * 1024 * 1024:  # a safety stop far past the limit
            sent += 1024
            yield b"x" * 1024

    with httpx.Client(timeout=20) as client:
        try:
            response = client.post(
                app_server.url + "/v1/test/echo",
                content=endless(),
                headers=app_server.headers(**{"Content-Type": "application/json"}),
            )
        except httpx.TransportError:  # the server hung up while the client still sent
            response = None
        assert sent < 64 * 1024 * 1024, "the server read the whole endless body"
        if response is not None:
            assert "content-length" not in {k.lower() for k in response.request.headers}
            error = _error(response, 413, "too_large")
            assert "api_max_body_bytes" in error["hint"]
    again = httpx.post(
        app_server.url + "/v1/test/echo", json={"text": "ok"}, headers=app_server.headers()
    )
    assert again.status_code == 200, again.text


def test_a_chunked_body_within_the_limit_is_read(app_server: AppServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": '
        yield b'"small"}'

    response = httpx.post(
        app_server.url + "/v1/test/echo",
        content=chunks(),
        headers=app_server.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "small"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_a_body_that_is_not_json_is_415(app_server: AppServer, content_type: str | None) -> None:
    headers = app_server.headers()
    if content_type:
        headers["Content-Type"] = content_type
    response = httpx.post(
        app_server.url + "/v1/test/echo", content=b'{"text": "hi"}', headers=headers
    )
    error = _error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]
    assert "Content-Type: application/json" in error["hint"]


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_json_media_types_with_parameters_or_suffixes_pass(
    app_server: AppServer, content_type: str
) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/echo",
        content=b'{"text": "hi"}',
        headers=app_server.headers(**{"Content-Type": content_type}),
    )
    assert response.status_code == 200, response.text


def test_a_route_taking_a_form_accepts_multipart(app_server: AppServer) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/form",
        data={"name": "Ada"},
        files={"f": ("a.txt", b"x")},
        headers=app_server.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "Ada"}
    refused = httpx.post(
        app_server.url + "/v1/test/form",
        content=b"name",
        headers=app_server.headers(**{"Content-Type": "text/plain"}),
    )
    _error(refused, 415, "unsupported_media_type")


def test_unknown_paths_and_methods_keep_their_404_and_405(app_server: AppServer) -> None:
    headers = app_server.headers(**{"Content-Type": "text/plain"})
    missing = httpx.post(app_server.url + "/v1/nothing-here", content=b"x", headers=headers)
    assert (
        _error(missing, 404, "not_found")["message"] == "No such endpoint: POST /v1/nothing-here."
    )
    wrong = httpx.put(app_server.url + "/v1/test/echo", content=b"x", headers=headers)
    error = _error(wrong, 405, "method_not_allowed")
    assert "POST" in error["message"] and wrong.headers["allow"] == "POST"


def test_a_trailing_slash_is_a_307_with_a_body_and_a_relative_location(
    app_server: AppServer,
) -> None:
    # Starlette's own redirect had an empty body and an absolute Location built from Host.
    body = {"text": "hi", "count": 2}
    moved = httpx.post(
        app_server.url + "/v1/test/echo/?x=1", json=body, headers=app_server.headers()
    )
    error = _error(moved, 307, "moved")
    assert "/v1/test/echo/ is not an endpoint; /v1/test/echo is" in error["message"]
    assert moved.headers["location"] == "/v1/test/echo?x=1"
    followed = httpx.post(
        app_server.url + "/v1/test/echo/",
        json=body,
        headers=app_server.headers(),
        follow_redirects=True,
    )
    assert followed.status_code == 200 and followed.json() == body
    # Only for a path whose twin is an endpoint; anything else stays a 404.
    missing = httpx.get(app_server.url + "/v1/nothing-here/", headers=app_server.headers())
    _error(missing, 404, "not_found")


def test_bad_json_is_422_naming_the_body(app_server: AppServer) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/echo",
        content=b'{"text": "hi",',
        headers=app_server.headers(**{"Content-Type": "application/json"}),
    )
    error = _error(response, 422, "invalid_request")
    assert error["fields"][0]["field"] == "body"
    assert "not valid JSON" in error["message"]


def test_a_wrong_field_is_422_naming_the_field(app_server: AppServer) -> None:
    missing = httpx.post(
        app_server.url + "/v1/test/echo", json={"count": 1}, headers=app_server.headers()
    )
    error = _error(missing, 422, "invalid_request")
    assert error["fields"][0]["field"] == "text"
    assert "`text`" in error["message"]
    wrong_type = httpx.post(
        app_server.url + "/v1/test/echo",
        json={"text": "a", "count": "many"},
        headers=app_server.headers(),
    )
    assert _error(wrong_type, 422, "invalid_request")["fields"][0]["field"] == "count"


def test_a_key_without_the_scope_is_403_before_the_body_is_judged(app_server: AppServer) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/echo",
        json={"count": "bad"},
        headers=app_server.headers(app_server.reader),
    )
    error = _error(response, 403, "forbidden")
    assert "'reader'" in error["message"] and "admin" in error["message"]


def test_the_openapi_documents_the_error_answers_of_a_body_route(app_server: AppServer) -> None:
    document = httpx.get(app_server.url + "/openapi.json").json()
    operation = document["paths"]["/v1/test/echo"]["post"]
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for code in ("401", "403", "413", "415", "422", "429"):
        assert operation["responses"][code]["content"]["application/json"]["schema"] == ref, code
    assert operation["x-required-scope"] == "admin"
    assert {"bearer": []} in operation["security"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


def test_a_browser_can_read_the_limits_own_answers(app_server: AppServer) -> None:
    response = httpx.post(
        app_server.url + "/v1/test/echo",
        content=b"x" * (LIMIT + 1),
        headers=app_server.headers(**{"Content-Type": "application/json", "Origin": ORIGIN}),
    )
    _error(response, 413, "too_large")
    assert response.headers["access-control-allow-origin"] == ORIGIN
    ok = httpx.post(
        app_server.url + "/v1/test/echo",
        json={"text": "hi"},
        headers=app_server.headers(Origin=ORIGIN),
    )
    assert ok.status_code == 200
    assert "retry-after" in ok.headers["access-control-expose-headers"].lower()
