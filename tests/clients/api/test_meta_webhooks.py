"""/webhooks/instagram on a real `carrier serve --client instagram`: Meta's verify
handshake, refused signatures, and a signed `comments` delivery answered once through
the fake Graph API (the poll is an hour away, so only the webhook can have caused it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from carrier_cli.clients.instagram.webhooks import signature_of
from tests.support.api_server import ServeProcess, start_serve
from tests.support.instagram_servers import FakeGraph, run_fake_graph
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]

APP_SECRET = "meta-app-secret-0123456789abcdef"
VERIFY_TOKEN = "verify-me-please-42"
ANSWER = "Thank you kindly, the harbour says hello back."


@dataclass
class Webhooked:
    serve: ServeProcess
    graph: FakeGraph
    model: ModelServerProcess

    @property
    def url(self) -> str:
        return self.serve.url + "/webhooks/instagram"


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[FakeGraph]:
    yield from run_fake_graph()


@pytest.fixture(scope="module")
def webhooked(
    tmp_path_factory: pytest.TempPathFactory, fake_graph: FakeGraph, model: ModelServerProcess
) -> Iterator[Webhooked]:
    """One server for the module (each start costs seconds)."""
    tmp_path = tmp_path_factory.mktemp("webhooks")
    model_server_process = model
    character = tmp_path / "marina.yaml"
    character.write_text(
        "name: Marina\nusername: marina\nbio: [A sailor.]\n"
        "settings:\n  fact_interval: 1000000\n"
        "clients:\n  instagram:\n    reply_to_comments: true\n",
        encoding="utf-8",
    )
    env = {
        "INSTAGRAM_ACCOUNT_ID": fake_graph.account_id,
        "INSTAGRAM_ACCESS_TOKEN": fake_graph.token,
        "CARRIER_GRAPH_API_BASE": fake_graph.url,
        "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
        "CARRIER_INSTAGRAM_COMMENT_POLL_INTERVAL": "3600",
        "INSTAGRAM_APP_SECRET": APP_SECRET,
        "INSTAGRAM_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
    }
    serve = start_serve(
        tmp_path / "home",
        model_server_process.url,
        characters=[character],
        args=["--client", "instagram"],
        env=env,
    )
    try:
        # The replier is up once its first poll read the (empty) recent posts.
        deadline = time.monotonic() + 30
        while not any(path.endswith("/media") for _m, path in fake_graph.requests):
            assert time.monotonic() < deadline, serve.stderr
            time.sleep(0.05)
        yield Webhooked(serve, fake_graph, model_server_process)
    finally:
        serve.terminate()


def delivery(account_id: str, media_id: str, comment_id: str, text: str) -> bytes:
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": account_id,
                "time": int(time.time()),
                "changes": [
                    {
                        "field": "comments",
                        "value": {
                            "from": {"id": "6000000000000009", "username": "sam.sails"},
                            "media": {"id": media_id, "media_product_type": "FEED"},
                            "id": comment_id,
                            "text": text,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload).encode()


def test_verify_handshake(webhooked: Webhooked) -> None:
    ok = httpx.get(
        webhooked.url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = httpx.get(
        webhooked.url,
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "forbidden"
    assert VERIFY_TOKEN not in wrong.text
    missing = httpx.get(webhooked.url, params={"hub.mode": "subscribe"})
    assert missing.status_code == 422
    assert missing.json()["error"]["fields"][0]["field"].startswith("query.hub.")


def test_unsigned_or_badly_signed_deliveries_are_refused(webhooked: Webhooked) -> None:
    graph = webhooked.graph
    media = graph.comments.add_post("A post")
    comment = graph.comments.add_comment(media, "hello")
    body = delivery(graph.account_id, media, comment, "hello")
    headers = {"Content-Type": "application/json"}
    unsigned = httpx.post(webhooked.url, content=body, headers=headers)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "unauthorized"
    forged = signature_of(body, "not-the-app-secret")
    bad = httpx.post(
        webhooked.url, content=body, headers={**headers, "X-Hub-Signature-256": forged}
    )
    assert bad.status_code == 403 and APP_SECRET not in bad.text
    tampered = httpx.post(
        webhooked.url,
        content=body.replace(b"hello", b"HELLO"),
        headers={**headers, "X-Hub-Signature-256": signature_of(body, APP_SECRET)},
    )
    assert tampered.status_code == 403
    time.sleep(0.5)
    assert not graph.comments.replies_by_account()


def test_a_signed_comment_is_answered_once(webhooked: Webhooked) -> None:
    graph = webhooked.graph
    media = graph.comments.add_post("Morning on the quay")
    comment = graph.comments.add_comment(media, "Which harbour is this?")
    webhooked.model.push(
        f"<response><thought>kind</thought><actions>REPLY</actions><text>{ANSWER}</text></response>"
    )
    body = delivery(graph.account_id, media, comment, "Which harbour is this?")
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature_of(body, APP_SECRET),
    }
    answer = httpx.post(webhooked.url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 1, "accepted": 1}
    deadline = time.monotonic() + 30
    while not graph.comments.replies_by_account(comment):
        assert time.monotonic() < deadline, webhooked.serve.stderr
        time.sleep(0.05)
    # Meta redelivers (it does, after a slow answer): still one reply.
    again = httpx.post(webhooked.url, content=body, headers=headers)
    assert again.status_code == 200
    time.sleep(1.0)
    [reply] = graph.comments.replies_by_account(comment)
    assert reply.text == ANSWER
