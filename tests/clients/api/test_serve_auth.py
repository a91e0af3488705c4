"""Every authentication case, the error shape and the request log, against a real
`carrier serve` (one per module) driven with httpx2; keys are made with the
`carrier api-keys` command on the server's CARRIER_HOME, as an operator would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.serve_support import (
    carrier,
    create_key,
    json_body_route,
    model_server,
    scoped_route,
    serving,
)
from tests.support.api_server import ServeProcess
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, model: ModelServerProcess
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("serve-auth")
    with serving(root, model, env={"CARRIER_LOG_LEVEL": "INFO"}) as process:
        assert process.key, process.stdout
        yield process


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    return dict(body["error"])


def _log_line(served: ServeProcess, needle: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in served.stderr_lines:
            if "carrier.api.access" in line and needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access log line with {needle!r}:\n{served.stderr}")


def test_no_key_is_401_with_a_challenge(served: ServeProcess) -> None:
    response = httpx.get(served.url + "/v1/agents")
    error = _error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "carrier api-keys create" in error["hint"]


@pytest.mark.parametrize(
    "key", ["crr_" + "A" * 43, "not-a-carrier-key", "crr_short", "crr_" + "é" * 20, "x" * 5000]
)
def test_a_wrong_key_is_401(served: ServeProcess, key: str) -> None:
    raw = key.encode("utf-8")  # a header is bytes: non-ASCII keys arrive as such
    response = httpx.get(served.url + "/v1/agents", headers={"X-API-Key": raw})
    _error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_key_of_the_right_shape_with_a_wrong_secret_is_401(served: ServeProcess) -> None:
    assert served.key
    forged = served.key[:12] + ("A" if served.key[12] != "A" else "B") + served.key[13:]
    response = httpx.get(served.url + "/v1/agents", headers=served.headers(forged))
    _error(response, 401, "unauthorized")


def test_bearer_and_x_api_key_both_work(served: ServeProcess) -> None:
    bearer = httpx.get(served.url + "/v1/agents", headers=served.headers())
    assert bearer.status_code == 200, bearer.text
    assert [a["name"] for a in bearer.json()["agents"]] == ["Carrier"]
    header = httpx.get(served.url + "/v1/agents/carrier", headers={"X-API-Key": served.key or ""})
    assert header.status_code == 200, header.text
    assert header.json()["name"] == "Carrier"


@pytest.mark.parametrize("name", ["api_key", "key", "token", "access_token"])
def test_a_key_in_the_url_is_refused_even_when_valid(served: ServeProcess, name: str) -> None:
    url = f"{served.url}/v1/agents?{name}={served.key}"
    alone = httpx.get(url)
    error = _error(alone, 401, "unauthorized")
    assert "URL" in error["message"]
    with_header = httpx.get(url, headers=served.headers())
    _error(with_header, 401, "unauthorized")
    # the request log never shows the query string (nor so the key)
    line = _log_line(served, "GET /v1/agents 401")
    assert "?" not in line
    assert served.key not in served.stderr


def test_a_revoked_key_is_refused_at_once(served: ServeProcess, model: ModelServerProcess) -> None:
    key = create_key(served, model, "soon-revoked", "read")
    first = httpx.get(served.url + "/v1/agents", headers=served.headers(key))
    assert first.status_code == 200, first.text
    done = carrier(served.home, model.url, "api-keys", "revoke", "soon-revoked")
    assert done.returncode == 0, done.stderr
    after = httpx.get(served.url + "/v1/agents", headers=served.headers(key))
    _error(after, 401, "unauthorized")


def test_a_key_without_the_scope_is_403(served: ServeProcess, model: ModelServerProcess) -> None:
    reader = create_key(served, model, "reader", "read")
    assert httpx.get(served.url + "/v1/agents", headers=served.headers(reader)).status_code == 200
    route = scoped_route(served.url, "carrier", "chat") or scoped_route(
        served.url, "carrier", "admin"
    )
    if route is None:
        pytest.skip("no route of carrier serve needs more than read yet (see test_limits_app)")
    method, path = route
    response = httpx.request(method, served.url + path, json={}, headers=served.headers(reader))
    error = _error(response, 403, "forbidden")
    assert "'reader'" in error["message"] and "'read'" in error["message"]


def test_success_carries_ratelimit_headers_and_the_log_names_the_key(
    served: ServeProcess,
) -> None:
    response = httpx.get(served.url + "/v1/agents", headers=served.headers())
    assert response.status_code == 200
    assert response.headers["ratelimit-limit"] == "120"
    assert 0 <= int(response.headers["ratelimit-remaining"]) < 120
    assert int(response.headers["ratelimit-reset"]) >= 1
    line = _log_line(served, "GET /v1/agents 200")
    assert line.rstrip().endswith("key=admin"), line
    assert "ms" in line


def test_unknown_paths_are_404_json_and_methods_405_json(served: ServeProcess) -> None:
    missing = httpx.get(served.url + "/v1/nope", headers=served.headers())
    assert _error(missing, 404, "not_found")["message"] == "No such endpoint: GET /v1/nope."
    wrong = httpx.delete(served.url + "/v1/agents", headers=served.headers())
    error = _error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET" and "takes GET" in error["message"]
    unknown_agent = httpx.get(served.url + "/v1/agents/nobody", headers=served.headers())
    assert "Carrier" in _error(unknown_agent, 404, "not_found")["hint"]


def test_health_endpoints_need_no_key(served: ServeProcess) -> None:
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok", "checks": {}}
    ready = httpx.get(served.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "models": "ok"}


def test_a_body_over_the_limit_is_413_before_anything_reads_it(served: ServeProcess) -> None:
    body = b"x" * (1_048_576 + 1)
    response = httpx.post(
        served.url + "/v1/agents",
        content=body,
        headers={**served.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    error = _error(response, 413, "too_large")
    assert "1,048,576 bytes" in error["message"] and "api_max_body_bytes" in error["hint"]
    _log_line(served, "POST /v1/agents 413")


def test_a_streamed_body_over_the_limit_is_413(served: ServeProcess) -> None:
    route = json_body_route(served.url, "carrier")
    if route is None:
        pytest.skip("carrier serve has no route with a JSON body yet (see test_limits_app)")
    method, path = route

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'

    try:
        response = httpx.request(
            method,
            served.url + path,
            content=chunks(),
            headers={**served.headers(), "Content-Type": "application/json"},
            timeout=30,
        )
    except httpx.TransportError:  # hung up on while still sending: also not read
        return
    _error(response, 413, "too_large")


def test_bad_json_and_other_media_types_on_a_body_route(served: ServeProcess) -> None:
    route = json_body_route(served.url, "carrier")
    if route is None:
        pytest.skip("carrier serve has no route with a JSON body yet (see test_limits_app)")
    method, path = route
    headers = served.headers()
    bad = httpx.request(
        method,
        served.url + path,
        content=b'{"room": ',
        headers={**headers, "Content-Type": "application/json"},
    )
    error = _error(bad, 422, "invalid_request")
    assert error["fields"][0]["field"] == "body"
    plain = httpx.request(
        method, served.url + path, content=b"hi", headers={**headers, "Content-Type": "text/plain"}
    )
    _error(plain, 415, "unsupported_media_type")


def test_no_secret_reaches_the_log(served: ServeProcess, tmp_path: Path) -> None:
    assert served.key
    httpx.get(served.url + f"/v1/agents/{served.key}", headers=served.headers())
    httpx.get(served.url + "/v1/agents", headers=served.headers(served.key[:-2] + "zz"))
    _log_line(served, "/v1/agents/crr_[redacted]")
    assert served.key not in served.stderr


def test_every_operation_has_a_tag_a_summary_and_its_errors_documented(
    served: ServeProcess,
) -> None:
    document = httpx.get(served.url + "/openapi.json").json()
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    # No key: the health checks, and Meta's webhooks (checked by their X-Hub-Signature-256,
    # tests/clients/api/test_meta_webhooks.py), since Meta cannot send a key.
    open_paths = {"/healthz", "/readyz", "/webhooks/instagram"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            assert operation.get("tags"), label
            assert operation.get("summary"), label
            responses = operation["responses"]
            if path in open_paths:
                assert "security" not in operation, label
                continue
            assert operation["x-required-scope"] in ("read", "chat", "admin"), label
            for code in ("401", "403", "429"):
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == ref, (label, code)
            if "{" in path:
                assert responses["404"]["content"]["application/json"]["schema"] == ref, label
            if "422" in responses:
                assert responses["422"]["content"]["application/json"]["schema"] == ref, label
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_docs_page_is_served(served: ServeProcess) -> None:
    page = httpx.get(served.url + "/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
