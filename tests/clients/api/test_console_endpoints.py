"""The read endpoints the web console added to the public API, against a real
`carrier serve`: a turn's prompts and usage, the character with its warnings, usage per
day, and the Instagram journal (here: not configured)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.clients.api.serve_support import create_key, model_server
from tests.support.api_server import ServeProcess, start_serve, write_character
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service]

AGENT = "Carrier"


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(
    model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    root: Path = tmp_path_factory.mktemp("console-api")
    character = write_character(
        root / "carrier.yaml", AGENT, "settings:\n  fact_interval: 1000000\nmood: sunny\n"
    )
    served = start_serve(root / "home", model.url, characters=[character])
    try:
        yield served
    finally:
        served.terminate()


@pytest.fixture(scope="module")
def api(served: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers=served.headers(), timeout=30) as client:
        yield client


def test_a_turn_shows_its_prompt_output_timings_tokens_and_cost(api: httpx.Client) -> None:
    sent = api.post(f"/v1/agents/{AGENT}/messages", json={"room": "t1", "text": "Hi there"}).json()
    by_message = api.get(f"/v1/agents/{AGENT}/turns/{sent['message_id']}")
    assert by_message.status_code == 200, by_message.text
    turn = by_message.json()
    by_reply = api.get(f"/v1/agents/{AGENT}/turns/{sent['reply']['id']}").json()
    assert by_reply == turn  # a reply opens the turn that made it
    assert turn["reply_id"] == sent["reply"]["id"] and turn["prompts"] == "live"
    (reply,) = [c for c in turn["calls"] if c["purpose"] == "reply"]
    assert "Hi there" in reply["prompt"] and "Echo: Hi there" in reply["output"]
    assert reply["input_tokens"] > 0 and reply["output_tokens"] > 0
    assert {"generate", "total"} <= set(turn["timings"])
    assert turn["totals"]["input_tokens"] >= reply["input_tokens"]


def test_an_unknown_or_malformed_turn_is_explained(api: httpx.Client) -> None:
    missing = api.get(f"/v1/agents/{AGENT}/turns/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["hint"]
    bad = api.get(f"/v1/agents/{AGENT}/turns/not-an-id")
    assert bad.status_code == 422 and "message_id" in bad.json()["error"]["message"]


def test_the_character_is_shown_with_its_validation_warnings(api: httpx.Client) -> None:
    character = api.get(f"/v1/agents/{AGENT}/character").json()
    assert character["name"] == AGENT and character["bio"] == ["A test character."]
    assert character["file"] == "carrier.yaml"  # a name, never the server's path
    assert any("mood" in (w["path"] + w["message"]) for w in character["warnings"])
    assert "settings" not in character


def test_usage_per_day_and_per_model(api: httpx.Client) -> None:
    api.post(f"/v1/agents/{AGENT}/messages", json={"room": "u1", "text": "count me"})
    deadline = time.monotonic() + 10
    while True:  # the usage meter writes its records in batches
        usage = api.get("/v1/usage", params={"since": "1d"}).json()
        if usage["rows"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [r["key"] for r in usage["rows"]] == [AGENT]
    assert usage["days"][-1]["calls"] >= 1
    while True:  # (read twice: a batch may land between the two reads, so retry)
        by_model = api.get("/v1/usage", params={"by": "model"}).json()
        model_key = by_model["rows"][0]["key"]
        one = api.get("/v1/usage", params={"by": "model", "model": model_key}).json()
        days_calls = sum(d["calls"] for d in one["days"])
        if days_calls == by_model["rows"][0]["calls"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert days_calls == by_model["rows"][0]["calls"]
    nobody = api.get("/v1/usage", params={"character": "nobody"}).json()
    assert nobody["days"] == []
    bad = api.get("/v1/usage", params={"since": "yesterday"})
    assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]


def test_the_read_endpoints_take_a_read_key(
    served: ServeProcess, model: ModelServerProcess
) -> None:
    key = create_key(served, model, "console-read", "read")
    with httpx.Client(base_url=served.url, headers=served.headers(key), timeout=30) as reader:
        assert reader.get("/v1/usage").status_code == 200
        assert reader.get(f"/v1/agents/{AGENT}/character").status_code == 200
        assert reader.get("/v1/instagram/posts").status_code in (200, 503)
    assert httpx.get(served.url + "/v1/usage").status_code == 401


def test_the_banner_prints_the_console_url(served: ServeProcess) -> None:
    assert f"Console: {served.url}/console/" in served.stdout
    assert f"Web console: open {served.url}/console/ and paste this key." in served.stdout


def test_memories_from_or_about_one_person(api: httpx.Client) -> None:
    base = f"/v1/agents/{AGENT}/memories"
    fact = api.post(base, json={"kind": "fact", "text": "Lin likes kites.", "sender": "u7"})
    assert fact.status_code == 201, fact.text
    memory = fact.json()["memory"]
    api.post(base, json={"kind": "fact", "text": "Someone else likes kites."})
    about = api.get(base, params={"kind": "fact", "sender": "u7"}).json()["memories"]
    assert [m["id"] for m in about] == [memory["id"]]
    by_entity = api.get(base, params={"entity": memory["entity_id"]}).json()["memories"]
    assert [m["id"] for m in by_entity] == [memory["id"]]
    hits = api.get(f"{base}/search", params={"q": "kites", "sender": "u7"}).json()["hits"]
    assert [h["id"] for h in hits] == [memory["id"]]
    both = api.get(base, params={"sender": "u7", "entity": memory["entity_id"]})
    assert both.status_code == 422 and both.json()["error"]["hint"]
    bad = api.get(base, params={"entity": "Lin"})
    assert bad.status_code == 422 and "entity" in bad.json()["error"]["message"]
