"""Fuzz every operation `carrier serve` documents, with schemathesis against a real server.

The schema is loaded from the running server's /openapi.json (so routes added later are
fuzzed without touching this file), each operation gets a bounded number of generated
requests, authenticated with the admin key, and every response must: not be a 5xx, have
a documented status code, a documented content type, and a body and headers that match
the schema. The server runs with rate limits off, so 429s do not cut the fuzzing short.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import ServerError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.clients.api.serve_support import model_server, serving
from tests.support.api_server import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]

MAX_EXAMPLES = 25


@schemathesis.check
def no_internal_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 500 (a crash). Other 5xx must be documented (status_code_conformance): a 503
    `not_configured` (Instagram without its settings) or a 502 model outage is an answer
    the API promises, which schemathesis' not_a_server_error would count as a failure."""
    if response.status_code == 500:
        raise ServerError(operation=case.operation.label, status_code=500)
    return None


CHECKS = [
    no_internal_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    env = {"CARRIER_API_RATE_LIMIT": "0", "CARRIER_API_AUTH_FAILURE_LIMIT": "0"}
    with model_server() as model, serving(root, model, env=env) as served:
        assert served.key
        yield served


def _fuzz(operation: Any, mode: GenerationMode, served: ServeProcess) -> int:
    """Run the generated cases of one operation; the number run."""
    calls = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(headers=served.headers(), checks=CHECKS, timeout=30)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # no parameter or body to make invalid (GET /healthz): nothing negative to send
    return calls


def test_every_operation_answers_as_documented(fuzzed_server: ServeProcess) -> None:
    """One test looping over the operations: schemathesis' lazy pytest loader (needed to
    read the schema from a server a fixture starts) does not run under pytest 9."""
    schema = schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")
    failures: list[str] = []
    fuzzed: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        fuzzed[label] = 0
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzzed[label] += _fuzz(operation, mode, fuzzed_server)
            except Exception as exc:  # every operation is fuzzed; all failures reported
                failures.append(f"{label} ({mode.value}): {exc}")
    assert {"GET /v1/agents", "GET /v1/agents/{agent}", "GET /readyz"} <= set(fuzzed)
    assert all(fuzzed.values()), fuzzed  # every operation was really called
    assert not failures, "\n\n".join(failures)
