"""GET /v1/instagram/queue, POST /v1/instagram/posts/{id}/approve|reject on a real
`carrier serve`, whose background scheduler publishes the approved draft once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.test_instagram import Servers, _serve, assert_error, servers  # noqa: F401
from tests.clients.instagram.cli_helpers import run_cli
from tests.clients.instagram.helpers import make_image
from tests.support.api_server import ServeProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def queue_serve(servers: Servers) -> Iterator[ServeProcess]:  # noqa: F811
    serve = _serve(
        servers,
        servers.tmp / "home-queue",
        CARRIER_INSTAGRAM_QUEUE_POLL_INTERVAL="0.1",
        CARRIER_INSTAGRAM_FTP_CLEANUP="after_publish",
    )
    try:
        yield serve
    finally:
        serve.terminate()


def draft(servers: Servers, home: Path, name: str, caption: str) -> int:  # noqa: F811
    work = home.parent / "work"
    work.mkdir(exist_ok=True)
    make_image(work / name, (800, 800), color=(len(caption) * 9 % 255, 40, 90))
    result = run_cli(
        "instagram",
        "post",
        name,
        "--caption",
        caption,
        "--draft",
        "--json",
        cwd=work,
        extra_env={**servers.env, "CARRIER_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["post_id"])


def test_list_approve_reject_over_the_api(
    servers: Servers,  # noqa: F811
    queue_serve: ServeProcess,
) -> None:
    graph = servers.graph
    before = len(graph.published)
    first = draft(servers, queue_serve.home, "a.jpg", "approved over the API")
    second = draft(servers, queue_serve.home, "b.jpg", "rejected over the API")
    with httpx.Client(
        base_url=queue_serve.url, headers=queue_serve.headers(), timeout=30
    ) as client:
        listed = client.get("/v1/instagram/queue", params={"status": "draft"})
        assert listed.status_code == 200, listed.text
        posts = {p["post_id"]: p for p in listed.json()["posts"]}
        assert set(posts) == {first, second}
        assert posts[first]["caption"] == "approved over the API"
        assert posts[first]["media"] == ["a.jpg"] and posts[first]["state"] == "draft"
        time.sleep(0.5)
        assert len(graph.published) == before  # a draft is never published by itself

        approved = client.post(f"/v1/instagram/posts/{first}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "approved"
        rejected = client.post(f"/v1/instagram/posts/{second}/reject", json={"reason": "off-topic"})
        assert rejected.status_code == 200 and rejected.json()["reason"] == "off-topic"

        assert_error(client.post(f"/v1/instagram/posts/{second}/approve"), 409, "conflict")
        assert_error(client.post("/v1/instagram/posts/999999/approve"), 404, "not_found")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = client.get("/v1/instagram/queue", params={"status": "published"}).json()
            if any(p["post_id"] == first for p in done["posts"]):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the approved draft was not published")
        assert [m["caption"] for m in graph.published[before:]] == ["approved over the API"]
        status = client.get(f"/v1/instagram/posts/{first}").json()
        assert status["status"] == "published" and status["media_id"]
        rejected_now = client.get("/v1/instagram/queue", params={"status": "rejected"}).json()
        assert [p["post_id"] for p in rejected_now["posts"]] == [second]
        bad = client.get("/v1/instagram/queue", params={"status": "sideways"})
        assert bad.status_code == 422


def test_a_read_key_lists_but_cannot_approve(
    servers: Servers,  # noqa: F811
    queue_serve: ServeProcess,
) -> None:
    import subprocess
    import sys

    from tests.support.api_server import serve_env

    post_id = draft(servers, queue_serve.home, "c.jpg", "needs an admin")
    created = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "api-keys", "create", "viewer", "--scope", "read"],
        env=serve_env(queue_serve.home, servers.model.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
    with httpx.Client(base_url=queue_serve.url, headers=headers, timeout=30) as client:
        listed = client.get("/v1/instagram/queue", params={"status": "draft"})
        assert listed.status_code == 200
        assert post_id in [p["post_id"] for p in listed.json()["posts"]]
        assert_error(client.post(f"/v1/instagram/posts/{post_id}/approve"), 403, "forbidden")
        assert_error(client.post(f"/v1/instagram/posts/{post_id}/reject"), 403, "forbidden")
    nobody = httpx.get(f"{queue_serve.url}/v1/instagram/queue")
    assert_error(nobody, 401, "unauthorized")


def test_a_post_scheduled_or_drafted_over_the_api_goes_out_by_the_scheduler_only(
    servers: Servers,  # noqa: F811
    tmp_path: Path,
) -> None:
    """POST /v1/instagram/posts with `at` or `draft` queues the post (as `post --at` and
    `--draft` do); the scheduler publishes it, sends instagram.published and removes the
    upload; a restart before it is due does not publish it early."""
    from tests.clients.api.test_instagram import WEBHOOK_SECRET, png_bytes
    from tests.webhooks.receiver import Receiver

    hooks = Receiver(WEBHOOK_SECRET).start()
    webhook = {"name": "p", "url": hooks.url, "events": ["instagram.published"], "secret_env": "S"}
    env = {
        "CARRIER_INSTAGRAM_QUEUE_POLL_INTERVAL": "0.1",
        "CARRIER_WEBHOOKS": json.dumps([webhook]),
        "CARRIER_WEBHOOKS_ALLOW_PRIVATE": "true",
        "S": WEBHOOK_SECRET,
    }
    home = servers.tmp / "home-api-schedule"
    uploads = home / "data" / "api-uploads" / "instagram"
    graph = servers.graph
    before = len(graph.published)
    serve = _serve(servers, home, **env)
    headers = serve.headers()  # the first start's key (a restart prints none)
    try:
        with httpx.Client(base_url=serve.url, headers=headers, timeout=30) as client:

            def post(name: str, color: tuple[int, ...], **fields: str) -> httpx.Response:
                data = png_bytes(tmp_path, name, color)
                return client.post(
                    "/v1/instagram/posts", files=[("media", (name, data))], data=fields
                )

            bad_at = post("x.png", (1, 2, 3, 255), caption="x", at="2020-01-01 10:00")
            error = assert_error(bad_at, 422, "invalid_request")
            assert error["message"].startswith("Request field `at`") and "past" in error["message"]
            bad_tz = post("x.png", (1, 2, 3, 255), caption="x", at="+1h", tz="Nowhere/City")
            assert assert_error(bad_tz, 422, "invalid_request")["message"].startswith(
                "Request field `tz`"
            )

            later = post("later.png", (200, 10, 10, 255), caption="in an hour", at="+1h")
            assert later.status_code == 202, serve.stderr[-3000:]
            queued = later.json()
            assert queued["status"] == "queued" and queued["scheduled_at"] is not None
            drafted = post("draft.png", (10, 200, 10, 255), caption="approve me", draft="true")
            assert drafted.status_code == 202, drafted.text
            assert drafted.json()["status"] == "draft" and drafted.json()["scheduled_at"] is None
            assert queued["replaced"] is None and drafted.json()["replaced"] is None
            # The same photo and caption again: it replaces the post's place in the
            # schedule (and says so), and its second upload is not kept.
            again = post("later.png", (200, 10, 10, 255), caption="in an hour", at="+2h")
            assert again.status_code == 202, again.text
            assert again.json()["post_id"] == queued["post_id"]
            assert again.json()["replaced"] == {
                "state": "queued",
                "scheduled_at": queued["scheduled_at"],
            }
            assert again.json()["scheduled_at"] > queued["scheduled_at"]
            listed = client.get("/v1/instagram/queue").json()["posts"]
            states = {p["post_id"]: p["state"] for p in listed}
            assert states == {queued["post_id"]: "queued", drafted.json()["post_id"]: "draft"}
            # by the names they were sent as (an approver must see which photo it is)
            assert sorted(name for p in listed for name in p["media"]) == [
                "draft.png",
                "later.png",
            ]
            time.sleep(0.5)  # five scheduler passes
            assert len(graph.published) == before
            assert len(list(uploads.iterdir())) == 2  # kept until they are published
    finally:
        serve.terminate()

    # A restart resumes interrupted API posts; a scheduled one is not "interrupted".
    serve = _serve(servers, home, **env)
    try:
        with httpx.Client(base_url=serve.url, headers=headers, timeout=30) as client:
            time.sleep(1.0)
            assert len(graph.published) == before, "a scheduled post went out early"
            draft_id = drafted.json()["post_id"]
            assert client.post(f"/v1/instagram/posts/{draft_id}/approve").status_code == 200
            deadline = time.monotonic() + 30
            while client.get(f"/v1/instagram/posts/{draft_id}").json()["status"] != "published":
                assert time.monotonic() < deadline, "the approved draft was not published"
                time.sleep(0.1)
            assert [m["caption"] for m in graph.published[before:]] == ["approve me"]

            def delivered() -> Any:
                found = [r for r in hooks.requests("instagram.published")]
                return next((r for r in found if r.json["data"]["post_id"] == draft_id), None)

            event = hooks.wait_for(delivered, what="instagram.published of the approved draft")
            assert event.verified
            deadline = time.monotonic() + 10
            while len(list(uploads.iterdir())) != 1:  # the draft's upload is removed
                assert time.monotonic() < deadline, list(uploads.iterdir())
                time.sleep(0.1)
    finally:
        serve.terminate()
        hooks.stop()
