"""Rate limits on a real `carrier serve` started with small limits: a key past
CARRIER_API_RATE_LIMIT gets 429 with Retry-After and RateLimit headers while another key
does not; a flood of wrong keys from one address is answered 429 after
CARRIER_API_AUTH_FAILURE_LIMIT failures, without hashing each one, and a valid key still
works."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from carrier_cli.clients.api.limits import HASH_CONCURRENCY
from tests.clients.api.serve_support import create_key, model_server, serving
from tests.support.api_server import ServeProcess
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]

RATE = 3
FAILURES = 4


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, model: ModelServerProcess
) -> Iterator[ServeProcess]:
    env = {"CARRIER_API_RATE_LIMIT": str(RATE), "CARRIER_API_AUTH_FAILURE_LIMIT": str(FAILURES)}
    with serving(tmp_path_factory.mktemp("serve-rate"), model, env=env) as process:
        yield process


def test_a_key_past_its_limit_gets_429_with_retry_after(
    served: ServeProcess, model: ModelServerProcess
) -> None:
    key = create_key(served, model, "busy", "read")
    other = create_key(served, model, "calm", "read")
    remaining = []
    for _ in range(RATE):
        response = httpx.get(served.url + "/v1/agents", headers=served.headers(key))
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-limit"] == str(RATE)
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    refused = httpx.get(served.url + "/v1/agents", headers=served.headers(key))
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "'busy'" in error["message"]
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert int(refused.headers["ratelimit-reset"]) >= int(retry_after)
    # the limit is per key
    assert httpx.get(served.url + "/v1/agents", headers=served.headers(other)).status_code == 200


def test_a_flood_of_wrong_keys_is_cut_off_without_hashing_each(served: ServeProcess) -> None:
    assert served.key
    # The real key's prefix with another secret: every one of these would cost scrypt.
    forged = [served.key[:12] + f"{n:031d}" for n in range(40)]

    def attempt(key: str) -> int:
        return httpx.get(served.url + "/v1/agents", headers=served.headers(key)).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(attempt, forged))
    elapsed = time.monotonic() - started
    unauthorized = statuses.count(401)
    assert FAILURES <= unauthorized <= FAILURES + HASH_CONCURRENCY, statuses
    assert statuses.count(429) == len(forged) - unauthorized, statuses
    assert elapsed < 10, elapsed
    # the key this process verified before is not held up by the flood
    ok = httpx.get(served.url + "/v1/agents/carrier", headers=served.headers())
    assert ok.status_code == 200, ok.text
