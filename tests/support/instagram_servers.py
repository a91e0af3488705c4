"""Real local servers for the Instagram pipeline: FTP/FTPS (pyftpdlib), a static HTTP server
over the FTP root, and a fake Graph API (aiohttp) that downloads and inspects the media.

Every server runs in a background thread of the test process and listens on 127.0.0.1, so
both in-process tests and `carrier` subprocesses reach them over real sockets.
Register with `pytest_plugins = ["tests.support.instagram_servers"]`.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import io
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FTP_USER = "carrier"
FTP_PASSWORD = "ftp-secret-pass-1234"
ACCESS_TOKEN = "EAAtesttoken0123456789abcdefABCDEF"
ACCOUNT_ID = "17841400000000001"

# pyftpdlib configures its own INFO logging unless its logger already has a handler.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)


# --- FTP ----------------------------------------------------------------------------------


@dataclass
class FtpServerHandle:
    host: str
    port: int
    root: Path
    tls: bool
    ca_file: Path | None
    control: dict[str, Any]  # drop_after: bytes after which the next upload's connection dies

    def drop_next_upload_after(self, nbytes: int) -> None:
        self.control["drop_after"] = nbytes

    def fail_deletes(self, on: bool = True) -> None:
        """DELE answers 421 (service not available), as a server going down would."""
        self.control["fail_delete"] = on


def _handler_classes(control: dict[str, Any], tls: bool, certfile: Path | None) -> type:
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler

    base_dtp: type = TLS_DTPHandler if tls else DTPHandler
    base_ftp: type = TLS_FTPHandler if tls else FTPHandler

    class DroppingDTP(base_dtp):  # type: ignore[misc, valid-type]
        def handle_read_event(self) -> None:  # pyftpdlib aliases handle_read to this
            super().handle_read_event()
            limit = control.get("drop_after")
            if (
                limit is not None
                and self.tot_bytes_received >= limit
                and self.receive
                and self.file_obj is not None
            ):
                control["drop_after"] = None
                control["drops"] = control.get("drops", 0) + 1
                self.file_obj.flush()
                self.cmd_channel.close()  # the whole session dies, as on a network failure

    def ftp_DELE(self: Any, path: str) -> Any:
        if control.get("fail_delete"):
            self.respond("421 Service not available, closing control connection.")
            return None
        return base_ftp.ftp_DELE(self, path)

    attrs: dict[str, Any] = {
        "ftp_DELE": ftp_DELE,
        "dtp_handler": DroppingDTP,
        "banner": "carrier test ftpd",
        "auth_failed_timeout": 0.05,
    }
    if tls:
        attrs["certfile"] = str(certfile)
        attrs["tls_control_required"] = False
        attrs["tls_data_required"] = False
    return type("CarrierTestFTPHandler", (base_ftp,), attrs)


def start_ftp(root: Path, tls: bool, tmp: Path) -> Iterator[FtpServerHandle]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

    certfile = ca_file = None
    if tls:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        certfile = tmp / "ftpd-cert.pem"
        ca_file = tmp / "ftpd-ca.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
        ca.cert_pem.write_to_path(str(ca_file))
    control: dict[str, Any] = {"drop_after": None, "drops": 0}
    handler = _handler_classes(control, tls, certfile)
    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(root), perm="elradfmwMT")
    handler.authorizer = authorizer  # type: ignore[attr-defined]
    handler.passive_ports = None  # type: ignore[attr-defined]
    # A private IOLoop per server: without one, pyftpdlib puts every server of the process
    # on its IOLoop.instance() singleton, so two servers in one test (FTPS + plain FTP) were
    # polled by two threads at once, and a teardown's close_all() closed the other server's
    # sockets (connection refused). The loop is only ever touched by its own thread: it polls
    # until asked to stop, then closes its sockets itself.
    ioloop = IOLoop.factory()
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=ioloop)  # bound and listening
    port = server.socket.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        try:
            while not stop.is_set():
                ioloop.loop(timeout=0.05, blocking=False)
        finally:
            server.close_all()

    thread = threading.Thread(target=serve, name=f"ftpd-{port}", daemon=True)
    thread.start()
    try:
        yield FtpServerHandle("127.0.0.1", port, root, tls, ca_file, control)
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "FTP server thread did not stop"


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "ftp-root"
    root.mkdir()
    return root


@pytest.fixture
def ftp_server(ftp_root: Path, tmp_path: Path) -> Iterator[FtpServerHandle]:
    yield from start_ftp(ftp_root, False, tmp_path)


@pytest.fixture
def ftps_server(ftp_root: Path, tmp_path: Path) -> Iterator[FtpServerHandle]:
    yield from start_ftp(ftp_root, True, tmp_path)


# --- static HTTP server over the FTP root ---------------------------------------------------


@dataclass
class HttpServerHandle:
    url: str
    root: Path
    requests: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def media_http_server(ftp_root: Path) -> Iterator[HttpServerHandle]:
    yield from serve_directory(ftp_root)


def serve_directory(ftp_root: Path) -> Iterator[HttpServerHandle]:
    """A static HTTP server over `ftp_root` (a generator: the fixtures' body, usable
    under any fixture scope)."""
    handle = HttpServerHandle("", ftp_root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            handle.requests.append((self.command, self.path))

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(ftp_root))
    )
    handle.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield handle
    finally:
        server.shutdown()
        server.server_close()


# --- fake Graph API -------------------------------------------------------------------------


def graph_error(
    code: int,
    subcode: int | None = None,
    message: str = "An error occurred",
    user_msg: str | None = None,
    transient: bool = False,
    etype: str = "OAuthException",
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": etype,
        "code": code,
        "is_transient": transient,
        "fbtrace_id": "AbCdEfGh123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_msg:
        error["error_user_title"] = "Error"
        error["error_user_msg"] = user_msg
    return {"error": error}


@dataclass
class Container:
    id: str
    params: dict[str, str]
    statuses: list[str]
    polls: int = 0
    published_media: str | None = None
    error_reason: str = ""
    # Resumable upload (upload_type=resumable): the bytes received, and the file's size
    # once a POST to the upload URI announced it. IN_PROGRESS until all of it arrived.
    uploaded: bytearray | None = None
    upload_size: int | None = None

    @property
    def awaiting_upload(self) -> bool:
        return self.uploaded is not None and len(self.uploaded) != self.upload_size

    @property
    def status_code(self) -> str:
        if self.published_media:
            return "PUBLISHED"
        if self.awaiting_upload:
            return "IN_PROGRESS"
        return self.statuses[min(self.polls, len(self.statuses) - 1)]


class FakeGraph:
    """Behaves like graph.facebook.com's content publishing endpoints, with script knobs."""

    def __init__(self) -> None:
        self.url = ""
        self.token = ACCESS_TOKEN
        self.account_id = ACCOUNT_ID
        # More accounts, each with its own token (one account per character):
        # account id -> (token, username). Each token opens only its own account.
        self.accounts: dict[str, tuple[str, str]] = {}
        self.insights: dict[str, dict[str, int]] = {}  # media id -> metric -> value
        self.drop_rupload_after: int | None = None
        self.username = "carrier_test"
        self.quota_usage = 0
        self.quota_total = 50
        self.quota_duration = 86400
        self.next_statuses: list[list[str]] = []
        self.default_statuses = ["IN_PROGRESS", "FINISHED"]
        self.failures: list[tuple[str, int, dict[str, Any]]] = []  # (endpoint, http, body)
        self.containers: dict[str, Container] = {}
        self.published: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.downloads: list[tuple[str, int, str]] = []
        self.delay = 0.0
        self.lost_answers: list[str] = []  # endpoints whose next answer is lost after the work
        self._ids = itertools.count(18000000000000001)
        self._lock = threading.Lock()
        from tests.support.instagram_comments import FakeComments

        self.comments = FakeComments(self)  # comments, replies, usage headers

    # knobs
    def fail_next(
        self,
        endpoint: str,
        code: int,
        subcode: int | None = None,
        *,
        http_status: int = 400,
        times: int = 1,
        **kw: Any,
    ) -> None:
        """endpoint: media, media_publish, status, limit, user, permalink, media_list,
        comments, replies, post_reply."""
        for _ in range(times):
            self.failures.append((endpoint, http_status, graph_error(code, subcode, **kw)))

    def lose_next_answer(self, endpoint: str) -> None:
        """The next call to `endpoint` (media_publish) does its work, then answers HTTP 500.

        That is what a client sees when the answer is lost on the way back (a proxy or
        gateway failing after Instagram acted): the post is out, the client does not know.
        """
        self.lost_answers.append(endpoint)

    def _lose_answer(self, endpoint: str) -> bool:
        with self._lock:
            if endpoint in self.lost_answers:
                self.lost_answers.remove(endpoint)
                return True
        return False

    def script_statuses(self, *sequences: list[str]) -> None:
        self.next_statuses.extend(sequences)

    def _failure(self, endpoint: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            for i, (name, status, body) in enumerate(self.failures):
                if name == endpoint:
                    del self.failures[i]
                    return status, body
        return None

    def _new_id(self) -> str:
        return str(next(self._ids))

    def is_media(self, node: str) -> bool:
        return any(m["id"] == node for m in self.published)

    # server
    def build_app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=1024**2, middlewares=[self.comments.middleware()])
        app.router.add_route("POST", "/ig-api-upload/{version}/{container}", self._rupload)
        app.router.add_route("*", "/{version}/{node}", self._node)
        app.router.add_route("*", "/{version}/{node}/{edge}", self._edge)
        return app

    async def _params(self, request: Any) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                params.update({k: str(v) for k, v in (await request.json()).items()})
            else:
                params.update({k: str(v) for k, v in (await request.post()).items()})
        return params

    def _json(self, body: Any, status: int = 200) -> Any:
        from aiohttp import web

        return web.json_response(body, status=status)

    def _caller(self, request: Any, params: dict[str, str]) -> str | None:
        """The account id the request's token opens (None: no valid token)."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header else params.get("access_token")
        return self._account_of(token)

    async def _auth(self, request: Any, params: dict[str, str]) -> Any:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header else params.get("access_token")
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._account_of(token) is None:
            return self._json(
                graph_error(
                    190,
                    463,
                    "Error validating access token: Session has expired on Tuesday.",
                ),
                401 if not token else 400,
            )
        return None

    async def _node(self, request: Any) -> Any:
        params = await self._params(request)
        node = request.match_info["node"]
        self.requests.append((request.method, request.path))
        if (denied := await self._auth(request, params)) is not None:
            return denied
        caller = self._caller(request, params)
        if node == "me" or node == caller:
            if (fail := self._failure("user")) is not None:
                return self._json(fail[1], fail[0])
            account = str(caller)
            username = self.username if account == self.account_id else self.accounts[account][1]
            return self._json({"id": account, "username": username, "name": "Carrier Test"})
        if node in self.containers:
            if (fail := self._failure("status")) is not None:
                return self._json(fail[1], fail[0])
            container = self.containers[node]
            if params.get("fields") == "video_status":
                done = len(container.uploaded or b"")
                phase = "complete" if not container.awaiting_upload else "in_progress"
                return self._json(
                    {
                        "id": node,
                        "video_status": {
                            "uploading_phase": {"status": phase, "bytes_transferred": done}
                        },
                    }
                )
            code = container.status_code
            if not container.awaiting_upload:
                container.polls += 1
            body = {"id": node, "status_code": code}
            if code == "ERROR":
                body["status"] = container.error_reason or "Error: 2207001 media upload failed"
            elif code == "EXPIRED":
                body["status"] = "Expired: the container was not published within 24 hours"
            return self._json(body)
        if (answer := await self.comments.route(request, node, None, params)) is not None:
            return answer
        for media in self.published:
            if media["id"] == node:
                if (fail := self._failure("permalink")) is not None:
                    return self._json(fail[1], fail[0])
                return self._json(media_fields(media))
        return self._json(
            graph_error(
                100,
                33,
                "Unsupported get request. Object with ID does not exist",
                etype="GraphMethodException",
            ),
            400,
        )

    async def _edge(self, request: Any) -> Any:
        params = await self._params(request)
        node, edge = request.match_info["node"], request.match_info["edge"]
        self.requests.append((request.method, request.path))
        if (denied := await self._auth(request, params)) is not None:
            return denied
        if (answer := await self.comments.route(request, node, edge, params)) is not None:
            return answer
        if edge == "insights" and node != self.account_id and node not in self.accounts:
            return self._media_insights(node, params)
        if node != self._caller(request, params):  # another account's node: not this token's
            return self._json(
                graph_error(100, 33, "Object does not exist", etype="GraphMethodException"), 400
            )
        if edge == "content_publishing_limit":
            if (fail := self._failure("limit")) is not None:
                return self._json(fail[1], fail[0])
            return self._json(
                {
                    "data": [
                        {
                            "quota_usage": self.quota_usage,
                            "config": {
                                "quota_total": self.quota_total,
                                "quota_duration": self.quota_duration,
                            },
                        }
                    ]
                }
            )
        if edge == "media" and request.method == "POST":
            if (fail := self._failure("media")) is not None:
                return self._json(fail[1], fail[0])
            return await self._create(params)
        if edge == "media_publish" and request.method == "POST":
            if (fail := self._failure("media_publish")) is not None:
                return self._json(fail[1], fail[0])
            answer = self._publish(params, node)
            if answer.status == 200 and self._lose_answer("media_publish"):
                return self._json(graph_error(2, None, "Service temporarily unavailable"), 500)
            return answer
        if edge == "media" and request.method == "GET":
            # The account's media, newest first (IG User Media edge).
            # Cursor paging as Meta does it: paging.cursors.after, and paging.next while
            # there is more.
            if (fail := self._failure("media_list")) is not None:
                return self._json(fail[1], fail[0])
            limit = int(params.get("limit", "25"))
            start = int(params.get("after") or 0)
            rows = [
                {**media_fields(m), "comments_count": self.comments.count(m["id"])}
                for m in sorted(self.published, key=lambda m: m["at"], reverse=True)
                if m.get("account", self.account_id) == node
            ]
            page: dict[str, Any] = {"data": rows[start : start + limit]}
            if start + limit < len(rows):
                after = str(start + limit)
                page["paging"] = {"cursors": {"after": after}, "next": f"{self.url}?after={after}"}
            return self._json(page)
        return self._json(graph_error(100, None, f"Unknown edge {edge}"), 400)

    async def _download(self, url: str) -> tuple[bytes | None, str]:
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                data = await response.read()
                self.downloads.append((url, response.status, response.content_type))
                if response.status != 200:
                    return None, f"HTTP {response.status}"
                return data, response.content_type
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.downloads.append((url, 0, ""))
            return None, str(exc)

    def _image_problem(self, data: bytes, story: bool) -> dict[str, Any] | None:
        from PIL import Image

        if len(data) > 8 * 1024 * 1024:
            return graph_error(
                36000,
                2207004,
                "Image size too large",
                user_msg="The image is too large to upload (max 8 MiB).",
            )
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception:
            return graph_error(36001, 2207005, "Unsupported image format")
        if image.format != "JPEG" or image.info.get("progressive"):
            return graph_error(
                36001,
                2207005,
                "Unsupported image format",
                user_msg="The image format is not supported; use JPEG.",
            )
        width, height = image.size
        if not 320 <= width <= 1440:
            return graph_error(36001, 2207005, f"Unsupported width {width}")
        if not story and not 0.8 - 1e-9 <= width / height <= 1.91 + 1e-9:
            return graph_error(
                36003,
                2207009,
                "Aspect ratio not supported",
                user_msg="The aspect ratio is not supported.",
            )
        return None

    async def _create(self, params: dict[str, str]) -> Any:
        media_type = params.get("media_type", "IMAGE").upper()
        story = media_type == "STORIES"
        if len(params.get("caption", "")) > 2200:
            return self._json(graph_error(36004, 2207010, "Caption too long"), 400)
        if (problem := option_problem(params, media_type)) is not None:
            return self._json(problem, 400)
        if "cover_url" in params:
            data, info = await self._download(params["cover_url"])
            if data is None:
                return self._json(
                    graph_error(9004, 2207052, "Media download has failed.", user_msg=info), 400
                )
            if (problem := self._image_problem(data, True)) is not None:
                return self._json(problem, 400)
        if media_type == "CAROUSEL":
            children = [c for c in params.get("children", "").split(",") if c]
            if not 2 <= len(children) <= 10:
                return self._json(
                    graph_error(
                        100,
                        2207028,
                        "Carousel needs 2 to 10 children",
                        user_msg="Carousels need 2 to 10 items.",
                    ),
                    400,
                )
            for child in children:
                c = self.containers.get(child)
                if c is None or c.params.get("is_carousel_item") != "true":
                    return self._json(graph_error(24, 2207006, f"Child {child} not found"), 400)
                if c.status_code != "FINISHED":
                    return self._json(graph_error(9007, 2207027, "Child not ready"), 400)
        elif "image_url" in params:
            data, info = await self._download(params["image_url"])
            if data is None:
                return self._json(
                    graph_error(
                        9004,
                        2207052,
                        "Media download has failed.",
                        user_msg=f"The media could not be fetched from the URI: {info}",
                    ),
                    400,
                )
            if (problem := self._image_problem(data, story)) is not None:
                return self._json(problem, 400)
        elif params.get("upload_type") == "resumable":
            if media_type not in ("REELS", "VIDEO", "STORIES"):
                return self._json(graph_error(100, None, "upload_type is for videos"), 400)
            cid = self._new_id()
            with self._lock:
                statuses = (
                    self.next_statuses.pop(0) if self.next_statuses else self.default_statuses
                )
            container = Container(cid, params, list(statuses), uploaded=bytearray())
            self.containers[cid] = container
            return self._json({"id": cid, "uri": f"{self.url}/ig-api-upload/v25.0/{cid}"})
        elif "video_url" in params:
            data, info = await self._download(params["video_url"])
            if data is None:
                return self._json(
                    graph_error(9004, 2207052, "Media download has failed.", user_msg=info), 400
                )
            if data[4:8] != b"ftyp":
                return self._json(graph_error(36001, 2207005, "Not a video"), 400)
            facts = video_facts(data)
            offset = params.get("thumb_offset")
            if offset is not None and facts.get("duration") and int(offset) >= facts["duration"]:
                return self._json(
                    graph_error(
                        100,
                        2207057,
                        "Invalid thumb offset",
                        user_msg="The thumbnail offset must be less than the video's length.",
                    ),
                    400,
                )
            if (reason := video_refusal(facts)) is not None:  # found while "processing"
                cid = self._new_id()
                statuses = ["IN_PROGRESS", "ERROR"]
                self.containers[cid] = Container(cid, params, statuses, error_reason=reason)
                return self._json({"id": cid})
        else:
            return self._json(graph_error(100, None, "image_url or video_url is required"), 400)
        cid = self._new_id()
        with self._lock:
            statuses = self.next_statuses.pop(0) if self.next_statuses else self.default_statuses
        self.containers[cid] = Container(cid, params, list(statuses))
        return self._json({"id": cid})

    def _media_insights(self, media_id: str, params: dict[str, str]) -> Any:
        """GET /{media}/insights?metric=a,b: lifetime totals, refused for an unknown metric
        or one the media's product type has not (stories: no likes, comments, saved)."""
        media = next((m for m in self.published if m["id"] == media_id), None)
        if media is None:
            return self._json(
                graph_error(100, 33, "Object does not exist", etype="GraphMethodException"), 400
            )
        if (fail := self._failure("insights")) is not None:
            return self._json(fail[1], fail[0])
        story = media["media_type"] == "STORIES"
        allowed = INSIGHT_METRICS if not story else ("reach", "views", "shares", "replies")
        wanted = [m for m in params.get("metric", "").split(",") if m]
        if not wanted:
            return self._json(
                graph_error(100, None, "(#100) The parameter metric is required"), 400
            )
        for name in wanted:
            if name not in allowed:
                return self._json(
                    graph_error(
                        100,
                        None,
                        f"(#100) metric[{wanted.index(name)}] must be one of the following "
                        f"values: {', '.join(allowed)}",
                    ),
                    400,
                )
        values = self.insights.get(media_id) or default_insights(media_id)
        return self._json(
            {
                "data": [
                    {
                        "name": name,
                        "period": "lifetime",
                        "values": [{"value": values.get(name, 0)}],
                        "title": name.capitalize(),
                        "id": f"{media_id}/insights/{name}/lifetime",
                    }
                    for name in wanted
                ]
            }
        )

    async def _rupload(self, request: Any) -> Any:
        """POST https://rupload.facebook.com/ig-api-upload/{v}/{container}: `Authorization:
        OAuth <token>`, `offset` and `file_size` headers, the bytes from `offset` on.
        `drop_rupload_after` (bytes) cuts the next upload's connection after that many."""
        cid = request.match_info["container"]
        self.requests.append((request.method, request.path))
        header = request.headers.get("Authorization", "")
        if not header.startswith("OAuth ") or self._account_of(header[6:].strip()) is None:
            return self._json(graph_error(190, 463, "Invalid OAuth access token"), 400)
        container = self.containers.get(cid)
        if container is None or container.uploaded is None:
            return self._json(graph_error(24, 2207006, "The media container does not exist"), 400)
        try:
            offset = int(request.headers["offset"])
            size = int(request.headers["file_size"])
        except (KeyError, ValueError):
            return self._json(graph_error(100, None, "offset and file_size headers needed"), 400)
        if offset != len(container.uploaded):
            return self._json(
                graph_error(
                    100, None, f"offset {offset}: {len(container.uploaded)} bytes are here"
                ),
                400,
            )
        container.upload_size = size
        drop, self.drop_rupload_after = self.drop_rupload_after, None
        async for chunk in request.content.iter_chunked(1 << 16):
            container.uploaded += chunk
            if drop is not None and len(container.uploaded) - offset >= drop:
                del container.uploaded[offset + drop :]
                assert request.transport is not None
                request.transport.close()  # the connection dies mid-upload
                return self._json({}, 500)
        if len(container.uploaded) != size:
            return self._json(graph_error(-1, 2207001, "Upload incomplete"), 400)
        data = bytes(container.uploaded)
        if data[4:8] != b"ftyp":
            container.statuses = ["ERROR"]
            container.error_reason = "Error: 2207005 not a video"
        elif (reason := video_refusal(video_facts(data))) is not None:
            container.statuses = ["IN_PROGRESS", "ERROR"]
            container.error_reason = reason
        return self._json({"success": True, "message": "Upload successful."})

    def add_account(self, account_id: str, token: str, username: str) -> None:
        self.accounts[account_id] = (token, username)

    def _account_of(self, token: str | None) -> str | None:
        if token == self.token:
            return self.account_id
        return next((a for a, (t, _) in self.accounts.items() if t == token), None)

    def _publish(self, params: dict[str, str], account: str | None = None) -> Any:
        cid = params.get("creation_id", "")
        container = self.containers.get(cid)
        if container is None:
            return self._json(graph_error(24, 2207006, "The media container does not exist"), 400)
        if container.published_media:
            return self._json(graph_error(9007, 2207026, "The media was already published"), 400)
        if container.status_code != "FINISHED":
            return self._json(
                graph_error(
                    9007,
                    2207027,
                    "Media ID is not available",
                    user_msg="The media is not ready for publishing, please wait for a moment",
                ),
                400,
            )
        if self.quota_usage >= self.quota_total:
            return self._json(
                graph_error(
                    9,
                    2207042,
                    "Application request limit reached",
                    user_msg="You reached the maximum number of posts "
                    "that is allowed to be published via API in 24h",
                ),
                400,
            )
        with self._lock:
            self.quota_usage += 1
            media_id = self._new_id()
            container.published_media = media_id
            self.published.append(
                {
                    "id": media_id,
                    "container": cid,
                    "caption": container.params.get("caption"),
                    "media_type": container.params.get("media_type", "IMAGE"),
                    "account": account or self.account_id,
                    "permalink": f"https://www.instagram.com/p/C{media_id[-8:]}/",
                    "at": time.time(),
                }
            )
        return self._json({"id": media_id})


INSIGHT_METRICS = ("reach", "views", "likes", "comments", "saved", "shares", "total_interactions")


def default_insights(media_id: str) -> dict[str, int]:
    """Stable numbers for media a test did not script (from the id's digits)."""
    seed = int(media_id[-4:])
    return {
        "reach": 100 + seed % 97,
        "views": 150 + seed % 89,
        "likes": seed % 23,
        "comments": seed % 7,
        "saved": seed % 5,
        "shares": seed % 3,
    }


def media_fields(media: dict[str, Any]) -> dict[str, Any]:
    """A published media as GET /{media} and the media edge show it (Meta's names:
    Reels are VIDEO with product type REELS, stories product type STORY)."""
    kind = media["media_type"]
    media_type = {"REELS": "VIDEO", "CAROUSEL": "CAROUSEL_ALBUM", "STORIES": "IMAGE"}.get(
        kind, kind
    )
    product = {"REELS": "REELS", "STORIES": "STORY"}.get(kind, "FEED")
    return {
        "id": media["id"],
        "caption": media["caption"],
        "media_type": media_type,
        "media_product_type": product,
        "permalink": media["permalink"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(media["at"])),
    }


COLLABORATOR_LIMIT = 3  # Meta: up to 3 collaborators on feed images, carousels and Reels


def option_problem(params: dict[str, str], media_type: str) -> dict[str, Any] | None:
    """The publishing options checked as Meta does, with its error shape (code 100,
    "Invalid parameter"); the client checks them first, so these answer only a client
    that did not."""

    def invalid(message: str, user_msg: str) -> dict[str, Any]:
        return graph_error(
            100, None, f"(#100) {message}", user_msg=user_msg, etype="OAuthException"
        )

    carousel_item = params.get("is_carousel_item") == "true"
    lists: dict[str, Any] = {}
    for name in ("collaborators", "user_tags"):
        if name in params:
            try:
                lists[name] = json.loads(params[name])
            except ValueError:
                return invalid(f"Param {name} must be a JSON array", f"{name} is not valid JSON.")
            if not isinstance(lists[name], list):
                return invalid(f"Param {name} must be an array", f"{name} must be an array.")
    collaborators = lists.get("collaborators")
    if collaborators is not None:
        if media_type == "STORIES" or carousel_item:
            return invalid(
                "Collaborators are not supported for this media type",
                "Stories and carousel items cannot have collaborators.",
            )
        if len(collaborators) > COLLABORATOR_LIMIT:
            return invalid(
                "The number of collaborators exceeds the limit",
                f"You can add up to {COLLABORATOR_LIMIT} collaborators.",
            )
    tags = lists.get("user_tags")
    if tags is not None:
        if media_type in ("REELS", "CAROUSEL", "VIDEO"):
            return invalid(
                "Param user_tags is not supported for this media type",
                "User tags are supported on images and stories.",
            )
        for tag in tags:
            if not isinstance(tag, dict) or not tag.get("username"):
                return invalid("Param user_tags[] needs a username", "Each tag needs a username.")
            if media_type != "STORIES":
                for axis in ("x", "y"):
                    value = tag.get(axis)
                    if not isinstance(value, int | float) or not 0 <= value <= 1:
                        return invalid(
                            f"Param user_tags[].{axis} must be between 0 and 1",
                            "Tag positions are fractions of the image, from 0 to 1.",
                        )
    if "location_id" in params and (media_type == "STORIES" or not params["location_id"].isdigit()):
        return invalid("Invalid location_id", "The location id must be a Facebook Page id.")
    for name in ("cover_url", "thumb_offset", "share_to_feed", "audio_name"):
        if name in params and media_type != "REELS":
            return invalid(f"Param {name} is only supported for REELS", f"{name}: Reels only.")
    if "share_to_feed" in params and params["share_to_feed"] not in ("true", "false"):
        return invalid("Param share_to_feed must be a boolean", "share_to_feed: true or false.")
    if "thumb_offset" in params and not params["thumb_offset"].isdigit():
        return invalid("Param thumb_offset must be an integer", "thumb_offset: milliseconds.")
    return None


def video_facts(data: bytes) -> dict[str, Any]:
    """What Meta's processing reads of a video (PyAV, as FFmpeg sees it); {} when it
    cannot be decoded (the tests' box-only MP4 files)."""
    import av

    try:
        opened: Any = av.open(io.BytesIO(data))
        with opened as container:
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            rate = video.average_rate
            facts: dict[str, Any] = {
                "codec": video.codec_context.name,
                "pix_fmt": video.codec_context.format.name if video.codec_context.format else None,
                "fps": float(rate) if rate else None,
                "width": video.codec_context.width,
                "duration": (container.duration or 0) / 1000,  # milliseconds
                "audio": audio.codec_context.name if audio else None,
                "sample_rate": audio.codec_context.sample_rate if audio else None,
            }
    except (av.error.FFmpegError, IndexError, OSError):
        return {}
    return facts


def video_refusal(facts: dict[str, Any]) -> str | None:
    """Why Meta's processing would put the container in ERROR (None: it would not)."""
    if not facts or not facts.get("width"):
        return None  # a box-only test file: nothing to decode, accepted as before
    if facts["codec"] not in ("h264", "hevc"):
        return f"Error: 2207026 unsupported video codec {facts['codec']}"
    if facts["fps"] is not None and not 23 <= facts["fps"] <= 60:
        return f"Error: 2207026 unsupported frame rate {facts['fps']:.0f}"
    if facts["width"] > 1920:
        return "Error: 2207026 the video is wider than 1920 px"
    if facts["audio"] not in (None, "aac") or (facts["sample_rate"] or 0) > 48000:
        return "Error: 2207026 unsupported audio"
    return None


@dataclass
class GraphHandle:
    graph: FakeGraph
    url: str


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    yield from run_fake_graph()


def run_fake_graph() -> Iterator[FakeGraph]:
    """A FakeGraph on its own event loop thread (a generator, like `serve_directory`)."""
    graph = FakeGraph()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    state: dict[str, Any] = {}

    async def start() -> None:
        from aiohttp import web

        runner = web.AppRunner(graph.build_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        graph.url = f"http://127.0.0.1:{port}"
        state["runner"] = runner
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "fake Graph API did not start"
    try:
        yield graph
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


# --- everything wired together --------------------------------------------------------------


@dataclass
class InstagramEnv:
    ftp: FtpServerHandle
    http: HttpServerHandle
    graph: FakeGraph
    env: dict[str, str]

    def published_files(self) -> list[Path]:
        return sorted(p for p in self.ftp.root.iterdir() if not p.name.startswith("."))


@pytest.fixture
def instagram_env(
    ftps_server: FtpServerHandle,
    media_http_server: HttpServerHandle,
    fake_graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch,
) -> InstagramEnv:
    """Settings in the environment (for this process and for `carrier` subprocesses)."""
    env = {
        "INSTAGRAM_ACCOUNT_ID": fake_graph.account_id,
        "INSTAGRAM_ACCESS_TOKEN": fake_graph.token,
        "CARRIER_GRAPH_API_BASE": fake_graph.url,
        "FTP_SERVER": f"{ftps_server.host}:{ftps_server.port}",
        "FTP_USERNAME": FTP_USER,
        "FTP_PASSWORD": FTP_PASSWORD,
        "FTP_DIRECTORY": "/",
        "HTTP_SERVER": media_http_server.url,
        "SSL_CERT_FILE": str(ftps_server.ca_file),
        "CARRIER_INSTAGRAM_POLL_INTERVAL": "0.02",
        "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
        # The tests look at the served files after publishing; the cleanup tests set
        # after_publish (the default outside tests) themselves.
        "CARRIER_INSTAGRAM_FTP_CLEANUP": "keep",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return InstagramEnv(ftps_server, media_http_server, fake_graph, env)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


# --- real FTP daemons: vsftpd and pure-ftpd as Debian ships them ---------------------------

VSFTPD_CI_DIR = Path("/opt/carrier-ci/vsftpd")  # where .ci/run extracts Debian's package
# Where `.ci/run` or a developer may have put the extracted package; vsftpd and pure-ftpd
# conflict in apt (both Provide ftp-server), so vsftpd is unpacked rather than installed.
_VSFTPD_DIRS = (VSFTPD_CI_DIR, Path("/opt/vsftpd-x"))
PUREFTPD_USER = "carrier"
PUREFTPD_PASSWORD = "pure-secret-pass-5678"
# `openssl passwd -6 -salt carriertestsalt pure-secret-pass-5678`
_PUREFTPD_HASH = (
    "$6$carriertestsalt$Vfp7a995FJOYPYzvhszxhPjQv4Yj8ywQeX51BAaVVpVUfkgj0oQLVkWXm7nWYw50Wq69b"
    "IpImJSrw7irKCnkJ/"
)


@dataclass
class RealFtpd:
    """A real FTP daemon on 127.0.0.1; `directory` is the writable upload directory."""

    name: str
    host: str
    port: int
    root: Path
    directory: str
    username: str
    password: str
    tls: bool
    ca_file: Path | None


def find_vsftpd() -> tuple[Path, Path] | None:
    """(binary, Debian's vsftpd.conf): CARRIER_TEST_VSFTPD, then PATH, then the CI dir."""
    import os
    import shutil

    candidates: list[Path] = []
    if env := os.environ.get("CARRIER_TEST_VSFTPD"):
        candidates.append(Path(env))
    if found := shutil.which("vsftpd") or shutil.which("vsftpd", path="/usr/sbin:/sbin"):
        candidates.append(Path(found))
    candidates += [d / "usr/sbin/vsftpd" for d in _VSFTPD_DIRS]
    for binary in candidates:
        if binary.is_file() and os.access(binary, os.X_OK):
            # usr/sbin/vsftpd -> etc/vsftpd.conf of the same tree (or /etc for a real install)
            tree = binary.resolve().parent.parent.parent
            for conf in (tree / "etc/vsftpd.conf", Path("/etc/vsftpd.conf")):
                if conf.is_file():
                    return binary, conf
    return None


def find_pureftpd() -> Path | None:
    import shutil

    found = shutil.which("pure-ftpd") or shutil.which("pure-ftpd", path="/usr/sbin:/sbin")
    return Path(found) if found else None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rsa_certificate(tmp: Path) -> tuple[Path, Path]:
    """trustme CA + RSA server certificate: Debian's vsftpd offers only RSA cipher suites."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, ca_file = tmp / "ftpd-cert.pem", tmp / "ftpd-ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    ca.cert_pem.write_to_path(str(ca_file))
    return certfile, ca_file


def _debian_conf(path: Path, overrides: dict[str, str], sep: str) -> str:
    """Debian's config file with `overrides` replacing (or adding) settings."""
    lines = []
    text = path.read_text() if path.is_file() else ""
    for line in text.splitlines():
        key = line.split("=", 1)[0].split(None, 1)[0] if line and line[0] != "#" else ""
        if key and key in overrides:
            continue
        lines.append(line)
    lines += [f"{key}{sep}{value}" for key, value in overrides.items()]
    return "\n".join(lines) + "\n"


def _wait_listening(proc: Any, port: int, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"FTP daemon exited with {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"FTP daemon did not listen on {port}: {log.read_text()}")


def _run_daemon(args: list[str], port: int, log: Path) -> Iterator[None]:
    import subprocess

    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start_vsftpd(
    tmp: Path, *, tls: bool, tls12_ciphers: bool = False, upload: Path | None = None
) -> Iterator[RealFtpd]:
    """Debian's vsftpd.conf plus only what a test needs; `require_ssl_reuse` stays YES.

    Changes from Debian's file, and why: listen on 127.0.0.1 and a free port in the
    foreground (standalone, no inetd); `run_as_launching_user=YES` because tests run as
    root and must not add system users (a local user needs one, with a password, for PAM),
    and in that mode vsftpd allows only anonymous logins (no chroot either), so anonymous
    login (as `nobody`) with upload, rename and TLS (`allow_anon_ssl`) into a tmp dir;
    the secure_chroot_dir and log files in the tmp dir. With `tls`: `ssl_enable=YES` and a
    trustme RSA certificate. vsftpd's built-in cipher list (DES-CBC3-SHA) has no suite a
    current OpenSSL accepts for TLS 1.2, so only TLS 1.3 works with it;
    `tls12_ciphers` sets `ssl_ciphers=HIGH` to test 1.2. `upload`: the upload directory
    (e.g. the one an HTTP server serves); a new one in `tmp` otherwise.
    """
    found = find_vsftpd()
    if found is None:
        pytest.skip(
            "vsftpd not found: set CARRIER_TEST_VSFTPD, put vsftpd on PATH, or extract "
            f"Debian's package into {VSFTPD_CI_DIR} (see .ci/run)"
        )
    binary, debian_conf = found
    root = tmp / "vsftpd-root"
    root.mkdir(parents=True)
    if upload is None:
        upload = root / "upload"
        upload.mkdir()
    upload.chmod(0o777)
    (tmp / "vsftpd-empty").mkdir()
    port = _free_port()
    overrides = {
        "listen": "YES",
        "listen_ipv6": "NO",
        "listen_address": "127.0.0.1",
        "listen_port": str(port),
        "background": "NO",
        "secure_chroot_dir": str(tmp / "vsftpd-empty"),
        "anonymous_enable": "YES",
        "anon_root": str(root),
        "run_as_launching_user": "YES",
        "ftp_username": "nobody",
        "write_enable": "YES",
        "anon_upload_enable": "YES",
        "anon_other_write_enable": "YES",
        "xferlog_file": str(tmp / "vsftpd-xfer.log"),
        "vsftpd_log_file": str(tmp / "vsftpd.log"),
    }
    ca_file = None
    if tls:
        certfile, ca_file = _rsa_certificate(tmp)
        overrides |= {
            "ssl_enable": "YES",
            "allow_anon_ssl": "YES",
            "rsa_cert_file": str(certfile),
            "rsa_private_key_file": str(certfile),
        }
        if tls12_ciphers:
            overrides["ssl_ciphers"] = "HIGH"
    conf = tmp / "vsftpd.conf"
    conf.write_text(_debian_conf(debian_conf, overrides, "="))
    for _ in _run_daemon([str(binary), str(conf)], port, tmp / "vsftpd.out"):
        yield RealFtpd(
            # No chroot with run_as_launching_user: FTP paths are the machine's paths.
            "vsftpd",
            "127.0.0.1",
            port,
            upload,
            str(upload),
            "anonymous",
            "",
            tls,
            ca_file,
        )


def start_pureftpd(tmp: Path, *, tls: bool) -> Iterator[RealFtpd]:
    """Debian's pure-ftpd.conf and conf/ settings plus a virtual user in a tmp PureDB.

    Debian's wrapper turns /etc/pure-ftpd/conf/* into options (MinUID 1000, NoAnonymous,
    TLSCipherSuite HIGH, ...); they are written into the config file here. Changed: listen
    on 127.0.0.1 and a free port in the foreground, logins from a tmp PureDB (a virtual
    user mapped to `nobody`) instead of PAM, no syslog or transfer log; `TLS 1` (TLS
    optional) and a trustme certificate for FTPS.
    """
    import subprocess

    binary = find_pureftpd()
    if binary is None:
        pytest.skip("pure-ftpd not found (apt-get install pure-ftpd; see .ci/run)")
    root = tmp / "pureftpd-root"
    root.mkdir()
    root.chmod(0o777)
    passwd, db = tmp / "pureftpd.passwd", tmp / "pureftpd.pdb"
    pure_pw = binary.parent.parent / "bin/pure-pw"
    pure_pw = pure_pw if pure_pw.exists() else Path("pure-pw")
    # The line `pure-pw useradd` would write, with a SHA-512 crypt hash: pure-pw's argon2id
    # (t=255) costs seconds per login on a busy machine; pure-ftpd checks either with crypt().
    passwd.write_text(f"{PUREFTPD_USER}:{_PUREFTPD_HASH}:65534:65534::{root}/./::::::::::::\n")
    subprocess.run(
        [str(pure_pw), "mkdb", str(db), "-f", str(passwd)], check=True, capture_output=True
    )
    port = _free_port()
    overrides = {
        "Daemonize": "no",
        "Bind": f"127.0.0.1,{port}",
        "NoAnonymous": "yes",
        "MinUID": "1000",
        "PAMAuthentication": "no",
        "UnixAuthentication": "no",
        "PureDB": str(db),
        "SyslogFacility": "none",
        "TLSCipherSuite": "HIGH",
    }
    ca_file = None
    if tls:
        certfile, ca_file = _rsa_certificate(tmp)
        overrides |= {"TLS": "1", "CertFile": str(certfile)}
    conf = tmp / "pure-ftpd.conf"
    conf.write_text(_debian_conf(Path("/etc/pure-ftpd/pure-ftpd.conf"), overrides, " "))
    for _ in _run_daemon([str(binary), str(conf)], port, tmp / "pureftpd.out"):
        yield RealFtpd(
            "pure-ftpd",
            "127.0.0.1",
            port,
            root,
            "/",
            PUREFTPD_USER,
            PUREFTPD_PASSWORD,
            tls,
            ca_file,
        )
