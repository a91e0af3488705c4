"""POST/GET /v1/instagram/*: a real `carrier serve` publishing through real FTPS, a real
HTTP server over the FTP root and the fake Graph API (tests/support/instagram_servers.py),
driven with httpx over real sockets. One server for the module; the tests that need
another configuration (no Instagram settings, a restart) start their own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.instagram.cli_helpers import noisy_jpeg
from tests.clients.instagram.helpers import make_image, make_mp4
from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.instagram_servers import (
    ACCESS_TOKEN,
    FTP_PASSWORD,
    FTP_USER,
    FakeGraph,
    FtpServerHandle,
    HttpServerHandle,
    run_fake_graph,
    serve_directory,
    start_ftp,
)
from tests.support.model_server import ModelServerProcess, start_server_process
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.service, pytest.mark.slow]

MAX_UPLOAD = 300_000  # CARRIER_API_MAX_UPLOAD_BYTES of the module's server
WEBHOOK_SECRET = "instagram-webhook-secret-0123"


@dataclass
class Servers:
    tmp: Path
    ftp: FtpServerHandle
    http: HttpServerHandle
    graph: FakeGraph
    model: ModelServerProcess
    env: dict[str, str]  # the Instagram settings
    character: Path


@dataclass
class Api:
    servers: Servers
    serve: ServeProcess
    client: httpx.Client
    hooks: Receiver  # the module server's webhook for instagram.published / .failed

    @property
    def graph(self) -> FakeGraph:
        return self.servers.graph

    @property
    def uploads(self) -> Path:
        return self.serve.home / "data" / "api-uploads" / "instagram"


def _stop_model(model: ModelServerProcess) -> None:
    model.process.terminate()
    try:
        model.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        model.process.kill()
        model.process.wait(timeout=5)
    if model.process.stdout is not None:
        model.process.stdout.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("instagram-api")
    root = tmp / "ftp-root"
    root.mkdir()
    with contextlib.ExitStack() as stack:
        ftp = stack.enter_context(contextlib.contextmanager(start_ftp)(root, True, tmp))
        http = stack.enter_context(contextlib.contextmanager(serve_directory)(root))
        graph = stack.enter_context(contextlib.contextmanager(run_fake_graph)())
        model = start_server_process()
        stack.callback(_stop_model, model)
        env = {
            "INSTAGRAM_ACCOUNT_ID": graph.account_id,
            "INSTAGRAM_ACCESS_TOKEN": graph.token,
            "CARRIER_GRAPH_API_BASE": graph.url,
            "FTP_SERVER": f"{ftp.host}:{ftp.port}",
            "FTP_USERNAME": FTP_USER,
            "FTP_PASSWORD": FTP_PASSWORD,
            "FTP_DIRECTORY": "/",
            "HTTP_SERVER": http.url,
            "SSL_CERT_FILE": str(ftp.ca_file),
            "CARRIER_INSTAGRAM_POLL_INTERVAL": "0.02",
            "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
        }
        character = write_character(tmp / "carrier.yaml")
        yield Servers(tmp, ftp, http, graph, model, env, character)


def _serve(servers: Servers, home: Path, **extra: str) -> ServeProcess:
    env = {**servers.env, **extra}
    return start_serve(home, servers.model.url, characters=[servers.character], env=env)


@pytest.fixture(scope="module")
def api(servers: Servers) -> Iterator[Api]:
    hooks = Receiver(WEBHOOK_SECRET).start()
    webhook = {
        "name": "posts",
        "url": hooks.url,
        "events": ["instagram.published", "instagram.failed"],
        "secret_env": "WH_SECRET",
    }
    serve = _serve(
        servers,
        servers.tmp / "home",
        CARRIER_API_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        CARRIER_WEBHOOKS=json.dumps([webhook]),
        CARRIER_WEBHOOKS_ALLOW_PRIVATE="true",
        WH_SECRET=WEBHOOK_SECRET,
    )
    try:
        with httpx.Client(base_url=serve.url, headers=serve.headers(), timeout=30) as client:
            yield Api(servers, serve, client, hooks)
    finally:
        serve.terminate()
        hooks.stop()


def webhook_for(api: Api, event: str, post_id: int) -> dict[str, Any]:
    """The signed delivery of `event` for the post (waits for it)."""

    def found() -> Any:
        for received in api.hooks.requests(event):
            if received.json["data"]["post_id"] == post_id:
                return received
        return None

    received = api.hooks.wait_for(found, what=f"{event} of post {post_id}")
    assert received.verified, "the delivery's signature does not verify"
    body: dict[str, Any] = received.json
    return body


@pytest.fixture(autouse=True)
def fresh_graph(servers: Servers) -> None:
    """No failure scripted by one test leaks into the next."""
    servers.graph.failures.clear()
    servers.graph.next_statuses.clear()
    servers.graph.quota_usage = 0


def wait_done(client: httpx.Client, url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll a status_url until the post is published or failed."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ("published", "failed") and not body["publishing"]:
            return body
        time.sleep(0.05)
    raise AssertionError(f"post did not finish: {body}")


def upload(client: httpx.Client, *files: tuple[str, bytes], **fields: str) -> httpx.Response:
    return client.post(
        "/v1/instagram/posts",
        files=[("media", (name, data)) for name, data in files],
        data=fields,
    )


def png_bytes(tmp: Path, name: str, color: tuple[int, ...]) -> bytes:
    path = make_image(tmp / name, (900, 700), fmt="PNG", mode="RGBA", color=color)
    return path.read_bytes()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert "Traceback" not in response.text and ACCESS_TOKEN not in response.text
    return error


# --- publishing -----------------------------------------------------------------------------


def test_multipart_upload_is_published_and_its_files_removed(api: Api, tmp_path: Path) -> None:
    data = png_bytes(tmp_path, "photo.png", (0, 128, 255, 200))
    response = upload(
        api.client, ("photo.png", data), caption="Low tide at noon.", alt_text="a blue square"
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/v1/instagram/posts/{accepted['post_id']}"
    assert response.headers["location"] == accepted["status_url"]
    assert accepted["already_published"] is False

    done = wait_done(api.client, accepted["status_url"])
    assert done["status"] == "published" and done["step"] == "published", done
    media = next(m for m in api.graph.published if m["id"] == done["media_id"])
    assert done["permalink"] == media["permalink"] and media["caption"] == "Low tide at noon."
    assert done["kind"] == "image" and done["files"] == 1 and done["error"] is None
    assert done["published_at"] is not None and done["created_at"] <= done["published_at"]
    container = api.graph.containers[media["container"]]
    assert container.params["alt_text"] == "a blue square"
    # Instagram fetched a JPEG (the PNG was converted); the server kept nothing.
    assert any(url.endswith(".jpg") and status == 200 for url, status, _ in api.graph.downloads)
    assert not list(api.uploads.iterdir())
    event = webhook_for(api, "instagram.published", accepted["post_id"])
    assert event["type"] == "instagram.published"
    assert event["data"]["permalink"] == done["permalink"]
    assert event["data"]["media_id"] == done["media_id"] and event["data"]["kind"] == "image"

    again = upload(api.client, ("again.png", data), caption="Low tide at noon.")
    assert again.status_code == 202, again.text
    assert again.json()["post_id"] == accepted["post_id"]
    assert again.json()["already_published"] is True and again.json()["status"] == "published"
    assert not list(api.uploads.iterdir()), "the duplicate upload was not removed"
    assert sum(m["caption"] == "Low tide at noon." for m in api.graph.published) == 1


def test_carousel_upload(api: Api, tmp_path: Path) -> None:
    files = [
        (f"{i}.jpg", make_image(tmp_path / f"{i}.jpg", (1080, 1080), color=(i * 60, 9, 9)))
        for i in range(3)
    ]
    response = upload(
        api.client, *[(n, p.read_bytes()) for n, p in files], caption="three", kind="carousel"
    )
    assert response.status_code == 202, response.text
    done = wait_done(api.client, response.json()["status_url"])
    assert done["status"] == "published" and done["kind"] == "carousel" and done["files"] == 3


def test_json_path_post_keeps_the_servers_file(api: Api, tmp_path: Path) -> None:
    photo = make_image(tmp_path / "on-server.jpg", (1080, 1080), color=(10, 200, 10))
    response = api.client.post(
        "/v1/instagram/posts", json={"path": str(photo), "caption": "from a path"}
    )
    assert response.status_code == 202, response.text
    done = wait_done(api.client, response.json()["status_url"])
    assert done["status"] == "published", done
    assert any(m["caption"] == "from a path" for m in api.graph.published)
    assert photo.is_file(), "a file named by path is the admin's, never deleted"


def test_the_character_writes_the_caption(api: Api, tmp_path: Path) -> None:
    api.servers.model.push("Salt on the wind, tea on the deck.")
    photo = make_image(tmp_path / "deck.jpg", (1080, 1080), color=(30, 60, 90)).read_bytes()
    response = upload(api.client, ("deck.jpg", photo), generate_caption="true")
    assert response.status_code == 202, response.text
    done = wait_done(api.client, response.json()["status_url"])
    assert done["status"] == "published", done
    assert done["caption"] == "Salt on the wind, tea on the deck."
    assert done["character"] == "Carrier"
    media = next(m for m in api.graph.published if m["id"] == done["media_id"])
    assert media["caption"] == done["caption"]
    # The same photo again continues the same post: no second caption, no second post.
    again = upload(api.client, ("deck.jpg", photo), generate_caption="true")
    assert again.json()["post_id"] == done["post_id"] and again.json()["already_published"]


def test_graph_failure_ends_failed_with_the_error(api: Api, tmp_path: Path) -> None:
    api.graph.fail_next("media", 100, None, message="Invalid parameter (fake refusal)")
    photo = make_image(tmp_path / "refused.jpg", (1080, 1080), color=(1, 2, 3))
    response = upload(api.client, ("refused.jpg", photo.read_bytes()), caption="refused")
    assert response.status_code == 202, response.text
    done = wait_done(api.client, response.json()["status_url"])
    assert done["status"] == "failed" and done["step"] == "uploaded", done
    assert "fake refusal" in done["error"] and done["media_id"] is None
    assert ACCESS_TOKEN not in str(done)
    event = webhook_for(api, "instagram.failed", done["post_id"])
    assert "fake refusal" in event["data"]["error"] and event["data"]["step"] == "uploaded"
    assert ACCESS_TOKEN not in json.dumps(event)
    assert list(api.uploads.iterdir()), "a failed post keeps its upload for a resume"


# --- refusals -------------------------------------------------------------------------------


def test_too_large_is_413_and_leaves_nothing(api: Api, tmp_path: Path) -> None:
    big = noisy_jpeg(tmp_path / "big.jpg").read_bytes()
    assert len(big) > MAX_UPLOAD
    before = set(api.uploads.iterdir()) if api.uploads.exists() else set()
    error = assert_error(upload(api.client, ("big.jpg", big), caption="x"), 413, "too_large")
    assert f"{MAX_UPLOAD:,}" in error["message"] and "api_max_upload_bytes" in error["hint"]
    # Chunked (no Content-Length): refused while streaming, the partial file removed.
    body, content_type = _multipart(("big.jpg", big), caption="x")
    chunked = api.client.post(
        "/v1/instagram/posts",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"Content-Type": content_type},
    )
    assert_error(chunked, 413, "too_large")
    huge = {"path": "/srv/x.jpg", "caption": "x" * 70_000}
    assert_error(api.client.post("/v1/instagram/posts", json=huge), 413, "too_large")
    assert (set(api.uploads.iterdir()) if api.uploads.exists() else set()) == before


def _multipart(*files: tuple[str, bytes], **fields: str) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://x/",
        files=[("media", (n, d)) for n, d in files],
        data=fields,
    )
    return request.read(), request.headers["content-type"]


def test_not_an_image_is_422_naming_the_field(api: Api, tmp_path: Path) -> None:
    error = assert_error(
        upload(api.client, ("notes.jpg", b"just some text, not a photo\n" * 20), caption="x"),
        422,
        "unsupported_media",
    )
    assert "`media`" in error["message"] and "notes.jpg" in error["message"]
    # An image the media checks refuse (aspect ratio 3:1 and no fit): 422 too, no path shown.
    wide = make_image(tmp_path / "wide.jpg", (1200, 400)).read_bytes()
    error = assert_error(
        upload(api.client, ("wide.jpg", wide), caption="x"), 422, "invalid_request"
    )
    assert "`media`" in error["message"] and "aspect ratio" in error["message"]
    assert str(api.uploads) not in error["message"]
    # The same image with fit=pad is accepted.
    padded = upload(api.client, ("wide.jpg", wide), caption="padded", fit="pad")
    assert padded.status_code == 202, padded.text
    assert wait_done(api.client, padded.json()["status_url"])["status"] == "published"


def test_bad_fields_are_422_naming_them(api: Api, tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.jpg", (1080, 1080)).read_bytes()
    cases = [
        ({"caption": "x", "kind": "reel"}, "kind"),
        ({"caption": "x", "kind": "poster"}, "kind"),
        ({}, "caption"),
        ({"caption": "x", "fit": "stretch"}, "fit"),
        ({"caption": "x", "colour": "red"}, "colour"),
        ({"caption": "x", "character": "Nobody"}, "character"),
    ]
    for fields, named in cases:
        response = upload(api.client, ("p.jpg", photo), **fields)
        error = assert_error(response, 422, "invalid_request")
        assert f"`{named}`" in error["message"], (fields, error)
    assert not list(api.uploads.glob("*.part"))

    for body, named in [
        ({"path": "relative/photo.jpg", "caption": "x"}, "path"),
        ({"path": str(tmp_path), "caption": "x"}, "path"),
        ({"path": str(tmp_path / "missing.jpg"), "caption": "x"}, "path"),
        ({"path": "/srv/photo\u0000.jpg", "caption": "x"}, "path"),
        ({"caption": "x"}, "path"),
        ({"paths": [str(tmp_path / "p.jpg"), "/dev/null"], "caption": "x"}, "paths.1"),
    ]:
        (tmp_path / "p.jpg").write_bytes(photo)
        error = assert_error(
            api.client.post("/v1/instagram/posts", json=body), 422, "invalid_request"
        )
        assert f"`{named}`" in error["message"], (body, error)
    text = tmp_path / "notes.txt"
    text.write_text("not media")
    error = assert_error(
        api.client.post("/v1/instagram/posts", json={"path": str(text), "caption": "x"}),
        422,
        "unsupported_media",
    )
    assert "`path`" in error["message"]
    assert_error(
        api.client.post(
            "/v1/instagram/posts", content=b"hi", headers={"Content-Type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    assert_error(
        api.client.post(
            "/v1/instagram/posts", content=b"{nope", headers={"Content-Type": "application/json"}
        ),
        422,
        "invalid_request",
    )


def test_malformed_multipart_is_400_and_leaves_nothing(api: Api, tmp_path: Path) -> None:
    photo = make_image(tmp_path / "p.jpg", (1080, 1080)).read_bytes()
    body, content_type = _multipart(("p.jpg", photo), caption="x")
    cases = [
        (body, "multipart/form-data"),  # no boundary
        (body[: len(body) // 2], content_type),  # cut inside the file part
        (b"--nonsense\r\n\r\n", content_type),
        (body.replace(b"form-data; ", b"attachment; ", 1), content_type),
    ]
    before = set(api.uploads.iterdir()) if api.uploads.exists() else set()
    for content, header in cases:
        response = api.client.post(
            "/v1/instagram/posts", content=content, headers={"Content-Type": header}
        )
        assert response.status_code in (400, 422), (header, response.text)
        assert response.json()["error"]["code"] in ("bad_request", "invalid_request")
    assert set(api.uploads.iterdir()) == before


def test_a_reel_is_checked_as_a_video_whatever_its_name(api: Api, tmp_path: Path) -> None:
    clip = make_mp4(tmp_path / "clip.mp4", seconds=1.0).read_bytes()  # too short for a Reel
    error = assert_error(
        upload(api.client, ("clip.jpg", clip), caption="x"), 422, "invalid_request"
    )
    assert "duration" in error["message"] and "`media`" in error["message"]


def test_read_key_cannot_post_but_reads(api: Api, tmp_path: Path) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "api-keys", "create", "reader", "--scope", "read"],
        env=serve_env(api.serve.home, api.servers.model.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    read_key = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {read_key}"}
    photo = make_image(tmp_path / "p.jpg", (1080, 1080)).read_bytes()
    denied = api.client.post(
        "/v1/instagram/posts",
        files=[("media", ("p.jpg", photo))],
        data={"caption": "x"},
        headers=headers,
    )
    assert_error(denied, 403, "forbidden")
    assert api.client.get("/v1/instagram/limit", headers=headers).status_code == 200
    nobody = httpx.post(f"{api.serve.url}/v1/instagram/posts", json={"path": "/x"})
    assert_error(nobody, 401, "unauthorized")


def test_limit(api: Api) -> None:
    api.graph.quota_usage = 3
    response = api.client.get("/v1/instagram/limit")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "quota_usage": 3,
        "quota_total": 50,
        "quota_duration": 86400,
        "remaining": 47,
        "next_free_slot": None,
    }
    api.graph.fail_next("limit", 190, 463, message="Error validating access token")
    error = assert_error(api.client.get("/v1/instagram/limit"), 502, "upstream_failed")
    assert "token" in error["message"].lower()


def test_unknown_post_is_404(api: Api) -> None:
    assert_error(api.client.get("/v1/instagram/posts/999999"), 404, "not_found")
    assert_error(api.client.get("/v1/instagram/posts/abc"), 422, "invalid_request")
    huge = api.client.get("/v1/instagram/posts/7633168137843458957115392")  # found by fuzzing
    assert_error(huge, 422, "invalid_request")


# --- other servers ---------------------------------------------------------------------------


def test_not_configured_is_503_naming_the_settings(servers: Servers, tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "home", servers.model.url, characters=[servers.character])
    try:
        with httpx.Client(base_url=serve.url, headers=serve.headers(), timeout=30) as client:
            photo = make_image(tmp_path / "p.jpg", (1080, 1080)).read_bytes()
            for response in (
                upload(client, ("p.jpg", photo), caption="x"),
                client.get("/v1/instagram/limit"),
            ):
                error = assert_error(response, 503, "not_configured")
                assert "INSTAGRAM_ACCESS_TOKEN" in error["message"] + error["hint"]
                assert "FTP_SERVER" in error["hint"] and "HTTP_SERVER" in error["hint"]
            assert not (serve.home / "data" / "api-uploads" / "instagram").exists() or not list(
                (serve.home / "data" / "api-uploads" / "instagram").iterdir()
            )
    finally:
        serve.terminate()


def test_a_restart_resumes_a_post_stopped_mid_way(servers: Servers, tmp_path: Path) -> None:
    """SIGTERM while Instagram processes the container: the post stops between steps; the
    next `carrier serve` on the same database continues it to published."""
    home = tmp_path / "home"
    servers.graph.script_statuses(["IN_PROGRESS"] * 100_000)
    first = _serve(servers, home)
    with httpx.Client(base_url=first.url, headers=first.headers(), timeout=30) as client:
        photo = make_image(tmp_path / "slow.jpg", (1080, 1080), color=(7, 7, 7)).read_bytes()
        response = upload(client, ("slow.jpg", photo), caption="resumed after a restart")
        assert response.status_code == 202, response.text
        status_url = response.json()["status_url"]
        deadline = time.monotonic() + 30
        while client.get(status_url).json()["step"] != "container_created":
            assert time.monotonic() < deadline, client.get(status_url).json()
            time.sleep(0.05)
    assert first.terminate() == 0, first.stderr
    container = next(
        c
        for c in servers.graph.containers.values()
        if c.params.get("caption", "").startswith("resumed")
    )
    assert container.published_media is None
    container.statuses = ["FINISHED"]

    second = _serve(servers, home)
    try:
        assert second.key is None  # the same database: its keys are the first run's
        with httpx.Client(base_url=second.url, headers=first.headers(), timeout=30) as client:
            done = wait_done(client, status_url)
        assert done["status"] == "published", done
        assert done["media_id"] == container.published_media
        assert done["attempts"] == 2
    finally:
        second.terminate()


def test_a_restart_resumes_a_post_after_a_crash(servers: Servers, tmp_path: Path) -> None:
    """The server dies (as with kill -9) right after the upload was journaled; the next
    start takes over the dead process's lease and publishes the post once."""
    home = tmp_path / "home"
    first = _serve(servers, home, CARRIER_TEST_CRASH_AFTER="uploaded")
    with httpx.Client(base_url=first.url, headers=first.headers(), timeout=30) as client:
        photo = make_image(tmp_path / "crash.jpg", (1080, 1080), color=(9, 90, 9)).read_bytes()
        response = upload(client, ("crash.jpg", photo), caption="published after a crash")
        assert response.status_code == 202, response.text
        status_url = response.json()["status_url"]
    assert first.process.wait(timeout=30) == 137  # crash_point's os._exit
    first.kill()
    assert not any(m["caption"] == "published after a crash" for m in servers.graph.published)

    second = _serve(servers, home)
    try:
        with httpx.Client(base_url=second.url, headers=first.headers(), timeout=30) as client:
            done = wait_done(client, status_url)
        assert done["status"] == "published", done
        published = [
            m for m in servers.graph.published if m["caption"] == "published after a crash"
        ]
        assert len(published) == 1 and done["media_id"] == published[0]["id"]
        assert not list((home / "data" / "api-uploads" / "instagram").iterdir())
    finally:
        second.terminate()


# --- in process: the poster's events and its bound -------------------------------------------


def test_events_and_the_bound(
    servers: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook the webhooks subscribe to: (instagram.published | instagram.failed, data),
    with the real pipeline against the module's servers; and 503 past `capacity`."""
    from carrier_cli.clients.api.errors import ApiError
    from carrier_cli.clients.api.instagram_posts import InstagramPoster
    from carrier_cli.clients.instagram.journal import Journal
    from carrier_cli.clients.instagram.options import InstagramOptions
    from carrier_cli.clients.instagram.pipeline import PostRequest
    from carrier_cli.config import Settings

    monkeypatch.setenv("CARRIER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SSL_CERT_FILE", servers.env["SSL_CERT_FILE"])
    loaded = InstagramOptions.from_settings(
        Settings(
            instagram_account_id=servers.graph.account_id,
            graph_api_base=servers.graph.url,
            ftp_server=servers.env["FTP_SERVER"],
            ftp_username=FTP_USER,
            http_server=servers.http.url,
            instagram_poll_interval=0.02,
            instagram_retry_delay=0.02,
            max_retries=0,
        )
    )
    # The secrets come from the keyring or the environment through the CLI's loader; here
    # they are given as the server would have them.
    options = dataclasses.replace(
        loaded,
        graph=dataclasses.replace(loaded.graph, access_token=ACCESS_TOKEN),
        ftp=dataclasses.replace(loaded.ftp, password=FTP_PASSWORD),
    )
    events: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> None:
        journal = await Journal.open(f"sqlite:///{tmp_path / 'journal.db'}")
        poster = InstagramPoster(options, journal, capacity=1, directory=tmp_path / "uploads")

        async def listener(kind: str, data: dict[str, Any]) -> None:
            events.append((kind, data))

        poster.listeners.append(listener)
        try:
            good = make_image(tmp_path / "good.jpg", (1080, 1080), color=(5, 50, 5))
            with poster.reservation():
                record, created = await poster.submit(PostRequest([good], caption="evented"))
            assert created
            while poster.active(record.id):
                await asyncio.sleep(0.02)
            servers.graph.fail_next("media", 100, None, message="refused for the event")
            bad = make_image(tmp_path / "bad.jpg", (1080, 1080), color=(50, 5, 5))
            with poster.reservation():
                failed, _ = await poster.submit(PostRequest([bad], caption="evented too"))
                try:
                    with poster.reservation():
                        raise AssertionError("a second reservation past capacity 1")
                except ApiError as exc:
                    assert exc.status == 503 and exc.headers["Retry-After"]
            while poster.active(failed.id):
                await asyncio.sleep(0.02)
        finally:
            await poster.stop()
            await journal.close()

    asyncio.run(scenario())
    assert [kind for kind, _ in events] == ["instagram.published", "instagram.failed"]
    published, failed = events[0][1], events[1][1]
    assert published["permalink"] and published["media_id"] and published["status"] == "published"
    assert failed["status"] == "failed" and "refused for the event" in failed["error"]
    assert ACCESS_TOKEN not in str(events)


# --- publishing options (issue 18) ------------------------------------------------------------


def test_publishing_options_reach_the_container(api: Api, tmp_path: Path) -> None:
    from tests.clients.instagram.videos import make_video

    clip = make_video(tmp_path / "clip.mov", fps=15)  # converted on the way
    cover = make_image(tmp_path / "cover.jpg", (1080, 1920))
    response = api.client.post(
        "/v1/instagram/posts",
        json={
            "path": str(clip),
            "caption": "api reel",
            "cover": str(cover),
            "collaborators": ["marina", "skipper"],
            "share_to_feed": False,
            "audio_name": "bells",
        },
    )
    assert response.status_code == 202, response.text
    done = wait_done(api.client, response.json()["status_url"])
    assert done["status"] == "published", done
    media = next(m for m in api.graph.published if m["caption"] == "api reel")
    params = api.graph.containers[media["container"]].params
    assert json.loads(params["collaborators"]) == ["marina", "skipper"]
    assert params["share_to_feed"] == "false" and params["cover_url"].endswith(".jpg")
    # Multipart: lists as names separated by spaces.
    photo = png_bytes(tmp_path, "tagged.png", (5, 5, 250, 255))
    response = upload(api.client, ("tagged.png", photo), caption="tags", user_tags="a@0.1,0.2 b")
    assert response.status_code == 202, response.text
    done = wait_done(api.client, response.json()["status_url"])
    media = next(m for m in api.graph.published if m["caption"] == "tags")
    tags = json.loads(api.graph.containers[media["container"]].params["user_tags"])
    assert [t["username"] for t in tags] == ["a", "b"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"collaborators": ["a", "b", "c", "d"]}, "collaborators", "at most 3 collaborators"),
        ({"user_tags": ["a@2,0"]}, "user_tags", "x must be a number from 0 to 1"),
        ({"location_id": "Paris"}, "location_id", "is not a location id"),
        ({"audio_name": "tune"}, "audio_name", "applies to Reels only"),
        ({"cover": "relative.jpg"}, "cover", "is not a file on the server"),
    ],
)
def test_publishing_options_are_422_naming_the_field(
    api: Api, tmp_path: Path, fields: dict[str, Any], field: str, message: str
) -> None:
    photo = make_image(tmp_path / "p.jpg", (1080, 1080))
    body = {"path": str(photo), "caption": "x", **fields}
    error = assert_error(api.client.post("/v1/instagram/posts", json=body), 422, "invalid_request")
    assert f"`{field}`" in error["message"] and message in error["message"]
