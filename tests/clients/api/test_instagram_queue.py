"""GET /v1/instagram/queue, POST /v1/instagram/posts/{id}/approve|reject on a real
`carrier serve`, whose background scheduler publishes the approved draft once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

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
