"""The turn queue end to end: a real Redis, an embedded PostgreSQL, a real `carrier serve
--role api` and two real `carrier run --role worker` processes, the fake model server.

The API process runs no turn itself (with every worker stopped a message gets 503
`no_worker`); a worker killed with -9 in the middle of a slow turn loses nothing (the
other takes the turn over and the client gets one reply, stored once); the queue stays
bounded (acknowledged turns are deleted, a full queue is refused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.chat_support import CHARACTER_EXTRA, parse_sse
from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.model_server import Reply, start_server_process
from tests.support.redis_server import RedisServer, start_redis

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.postgres]

AGENT = "/v1/agents/carrier"
CHAT = "/v1/chat/completions"
PICKUP = 4.0  # turn_queue_pickup_timeout of these processes
CLAIM_IDLE = 1.5  # turn_queue_claim_idle
MAX_LEN = 10


@dataclass
class Worker:
    """A `carrier run --role worker` process, with its output collected."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60, after: int = 0) -> None:
        """Wait for a line with `text` among the lines from index `after` on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)[after:]):
                return
            if self.process.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"worker never logged {text!r}:\n{self.output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_worker(home: Path, model_url: str, character: Path, env: dict[str, str]) -> Worker:
    home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "carrier_cli", "run", "--role", "worker"]
    process = subprocess.Popen(
        [*command, "--character", str(character)],
        cwd=home.parent,
        env=serve_env(home, model_url, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = Worker(process)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            worker.lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    worker.wait_for("taking turns")
    return worker


@dataclass
class Cluster:
    api: ServeProcess
    model: Any
    redis: RedisServer
    workers: list[Worker]
    root: Path
    character: Path
    env: dict[str, str]

    def post(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return httpx.post(
            f"{self.api.url}{AGENT}/messages",
            json=body,
            headers={**self.api.headers(), **kwargs.pop("headers", {})},
            timeout=kwargs.pop("timeout", 90),
            **kwargs,
        )

    def agent_id(self) -> str:
        r = httpx.get(f"{self.api.url}/v1/agents", headers=self.api.headers(), timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["agents"][0]["id"])

    def room_messages(self, room: str) -> list[dict[str, Any]]:
        r = httpx.get(
            f"{self.api.url}{AGENT}/rooms/{room}/messages",
            params={"limit": 100},
            headers=self.api.headers(),
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return list(r.json()["messages"])

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[Cluster]:
    from tests.support.postgres import _run, with_database

    root = tmp_path_factory.mktemp("turn-queue")
    redis_server = start_redis(root)
    name = f"carrier_queue_{uuid.uuid4().hex[:12]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    model = start_server_process()
    env = {
        "CARRIER_DATABASE_URL": with_database(postgres_admin_url, name),
        "REDIS_URL": redis_server.url,
        "CARRIER_API_RATE_LIMIT": "0",
        "CARRIER_API_SSE_PING_SECONDS": "0.5",
        "CARRIER_TURN_QUEUE_PICKUP_TIMEOUT": str(PICKUP),
        "CARRIER_TURN_QUEUE_CLAIM_IDLE": str(CLAIM_IDLE),
        "CARRIER_TURN_QUEUE_MAX_LEN": str(MAX_LEN),
    }
    # The file plugin: a turn a worker runs can answer with a file and an embed.
    extra = CHARACTER_EXTRA + 'plugins: ["tests.support.file_plugin:PLUGIN"]\n'
    character = write_character(root / "carrier.yaml", extra=extra)
    api = start_serve(
        root / "api-home", model.url, characters=[character], args=["--role", "api"], env=env
    )
    workers: list[Worker] = []
    try:
        for number in (1, 2):
            workers.append(start_worker(root / f"worker{number}", model.url, character, env))
        yield Cluster(api, model, redis_server, workers, root, character, env)
    finally:
        for worker in workers:
            worker.stop()
        api.terminate()
        model.process.terminate()
        model.process.wait(10)
        redis_server.stop()
        with contextlib.suppress(Exception):
            _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def room_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def stream_length(cluster: Cluster) -> int:
    return int(cluster.redis_client().xlen(f"carrier:turns:{cluster.agent_id()}"))


def settled(cluster: Cluster, timeout: float = 5.0) -> tuple[int, int]:
    """(stream length, pending) once both are 0, or as they are after `timeout`: a
    worker acknowledges just after it sent the answer, so the client may be faster."""
    client = cluster.redis_client()
    key = f"carrier:turns:{cluster.agent_id()}"
    deadline = time.monotonic() + timeout
    while True:
        state = (int(client.xlen(key)), int(client.xpending(key, "turns")["pending"]))
        if state == (0, 0) or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_a_rest_message_is_answered_by_a_worker(cluster: Cluster) -> None:
    room = room_name("json")
    cluster.model.push(Reply(text="from a worker"))
    r = cluster.post({"room": room, "text": "hello workers"})
    assert r.status_code == 200, r.text + cluster.api.stderr[-3000:]
    body = r.json()
    assert body["reply"]["text"] == "from a worker"
    assert body["replayed"] is False
    texts = [m["text"] for m in cluster.room_messages(room)]
    assert sorted(texts) == ["from a worker", "hello workers"]
    # Acknowledged turns are deleted: the stream holds only what waits.
    assert settled(cluster) == (0, 0)


def test_a_streamed_message_is_answered_by_a_worker(cluster: Cluster) -> None:
    room = room_name("sse")
    words = ["Once ", "upon ", "a ", "time."]
    # The runtime's reply format, so the deltas stream as they come.
    chunks = ["<response><thought>Tell.</thought><actions>REPLY</actions><text>"]
    chunks += [*words, "</text></response>"]
    cluster.model.push(Reply(text="".join(chunks), chunks=chunks, chunk_delay=0.1))
    r = cluster.post({"room": room, "text": "a story", "stream": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text).events
    names = [e.name for e in events]
    assert names[-2:] == ["reply", "done"], names
    tokens = "".join(e.data["text"] for e in events if e.name == "token")
    assert tokens == "Once upon a time."
    assert names.count("token") >= 2  # streamed through the queue, not sent at the end
    assert events[-2].data["reply"]["text"] == "Once upon a time."


def test_an_idempotent_retry_is_a_replay_through_the_queue(cluster: Cluster) -> None:
    room = room_name("idem")
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    cluster.model.push(Reply(text="only once"))
    first = cluster.post({"room": room, "text": "once"}, headers=headers)
    calls = len(cluster.model.requests(CHAT))
    again = cluster.post({"room": room, "text": "once"}, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["reply"]["text"] == "only once"
    assert len(cluster.model.requests(CHAT)) == calls  # no second generation


async def test_a_websocket_message_is_answered_by_a_worker(cluster: Cluster) -> None:
    # The worker runs the turn; its events reach this server's WebSocket over the relay.
    from tests.clients.api.ws_client import authed, is_type, send, until

    ws = await authed(cluster.api.url, cluster.api.key)
    try:
        cluster.model.push(Reply(text="a worker's websocket reply"))
        frame = {"type": "message", "agent": "Carrier", "room": room_name("ws"), "text": "hi"}
        await send(ws, {**frame, "client_id": "c1"})
        frames = await until(ws, is_type("reply.completed"), timeout=30)
        assert frames[-1]["data"]["reply"]["text"] == "a worker's websocket reply"
        assert not [f for f in frames if f["type"] == "error"], frames
    finally:
        await ws.close()


async def test_a_workers_files_and_embeds_reach_the_api_and_download(cluster: Cluster) -> None:
    """The worker runs the turn; the file's bytes come back in its result (base64 in the
    inbox entry), the API process stores them and serves the url; SSE and the WebSocket
    carry the same descriptors."""
    from carrier_cli.runtime.outgoing import embed_json
    from tests.support.file_plugin import CARD, REPORT, reply_choosing

    def check(files: list[dict[str, Any]], embeds: list[dict[str, Any]]) -> None:
        assert [(f["id"], f["filename"], f["size"]) for f in files] == [
            (REPORT.file_id, "report.csv", len(REPORT.data))
        ]
        assert embeds == [embed_json(CARD)]
        got = httpx.get(cluster.api.url + files[0]["url"], headers=cluster.api.headers())
        assert got.status_code == 200, got.text
        assert got.content == REPORT.data
        assert got.headers["content-type"].startswith("text/csv")

    cluster.model.push(reply_choosing("SHOW_REPORT"))
    r = cluster.post({"room": room_name("files"), "text": "the report"})
    assert r.status_code == 200, r.text + cluster.api.stderr[-3000:]
    assert r.json()["reply"]["actions"] == ["REPLY", "SHOW_REPORT"]
    check(r.json()["files"], r.json()["embeds"])
    stored = list((cluster.api.home / "data" / "api-files").glob("*.bin"))
    assert [p.name for p in stored] == [f"{REPORT.file_id}.bin"]  # on the API's disk
    for path in stored:
        path.unlink()  # the stream and the WebSocket must bring the bytes again

    cluster.model.push(reply_choosing("SHOW_REPORT"))
    streamed = cluster.post({"room": room_name("files-sse"), "text": "the report", "stream": True})
    reply = parse_sse(streamed.text).events[-2].data
    check(reply["files"], reply["embeds"])
    for path in (cluster.api.home / "data" / "api-files").glob("*.bin"):
        path.unlink()

    async def over_the_websocket() -> dict[str, Any]:
        from tests.clients.api.ws_client import authed, is_type, send, until

        ws = await authed(cluster.api.url, cluster.api.key)
        try:
            cluster.model.push(reply_choosing("SHOW_REPORT"))
            frame = {"type": "message", "agent": "Carrier", "room": room_name("files-ws")}
            await send(ws, {**frame, "text": "the report", "client_id": "f1"})
            frames = await until(ws, is_type("reply.completed"), timeout=30)
            return dict(frames[-1]["data"]["reply"])
        finally:
            await ws.close()

    reply = await over_the_websocket()
    check(reply["files"], reply["embeds"])  # downloadable as soon as the frame came


def test_redis_restarted_under_the_processes(cluster: Cluster) -> None:
    # Without persistence the restarted Redis has no stream and no group: the workers
    # recreate their group, the API's inbox reader reconnects, both say so in their logs.
    marks = [len(worker.lines) for worker in cluster.workers]
    cluster.redis.restart()
    # Each worker blocked in XREADGROUP fails, backs off (0.5 s, doubling) and says when a
    # read works again; a post before that could wait out the pickup timeout (4 s).
    for worker, mark in zip(cluster.workers, marks, strict=True):
        worker.wait_for("reachable again", after=mark)
    room = room_name("restart")
    cluster.model.push(Reply(text="after the restart"))
    r = cluster.post({"room": room, "text": "still there?"})
    assert r.status_code == 200, r.text + cluster.api.stderr[-3000:]
    assert r.json()["reply"]["text"] == "after the restart"
    for worker in cluster.workers:
        assert "failed (" in worker.output and "reachable again" in worker.output, worker.output


def test_a_worker_killed_mid_turn_loses_nothing(cluster: Cluster) -> None:
    room = room_name("kill")
    agent_id = cluster.agent_id()
    key = f"carrier:turns:{agent_id}"
    calls = len(cluster.model.requests(CHAT))
    # The first attempt's model call is slow; the worker that takes it is killed in it.
    cluster.model.push(Reply(text="the dead worker's reply", delay=6.0))
    cluster.model.push(Reply(text="the survivor's reply"))
    answer: dict[str, httpx.Response] = {}
    client = threading.Thread(
        target=lambda: answer.setdefault("r", cluster.post({"room": room, "text": "survive?"}))
    )
    client.start()
    deadline = time.monotonic() + 30
    while len(cluster.model.requests(CHAT)) == calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(cluster.model.requests(CHAT)) > calls, "no worker called the model"
    pending = cluster.redis_client().xpending_range(key, "turns", "-", "+", 10)
    assert len(pending) == 1, pending
    consumer = pending[0]["consumer"].decode()
    victim = next(w for w in cluster.workers if f"-{w.process.pid}-" in consumer)
    survivor = next(w for w in cluster.workers if w is not victim)
    killed_at = time.monotonic()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(10)
    client.join(60)
    assert not client.is_alive(), "the client never got an answer"
    took = time.monotonic() - killed_at
    r = answer["r"]
    assert r.status_code == 200, r.text
    assert r.json()["reply"]["text"] == "the survivor's reply"
    assert took < CLAIM_IDLE * 4 + 5, f"the takeover took {took:.1f} s"
    assert "took over turn" in survivor.output
    # Answered once: one incoming message, one reply, stored once each.
    texts = sorted(m["text"] for m in cluster.room_messages(room))
    assert texts == ["survive?", "the survivor's reply"], texts
    assert settled(cluster) == (0, 0)
    # A fresh worker for the tests that follow.
    replacement = start_worker(
        cluster.root / "worker3", cluster.model.url, cluster.character, cluster.env
    )
    cluster.workers[cluster.workers.index(victim)] = replacement


def test_no_worker_running_is_a_clear_error_and_the_queue_stays_bounded(cluster: Cluster) -> None:
    for worker in cluster.workers:
        worker.stop()
    calls = len(cluster.model.requests(CHAT))
    answers: list[httpx.Response] = []
    senders = [
        threading.Thread(
            target=lambda n=n: answers.append(
                cluster.post({"room": room_name("wait"), "text": f"m{n}"})
            )
        )
        for n in range(MAX_LEN)
    ]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 10
    while stream_length(cluster) < MAX_LEN and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream_length(cluster) == MAX_LEN
    full = cluster.post({"room": room_name("full"), "text": "one too many"})
    assert full.status_code == 503, full.text
    assert full.json()["error"]["code"] == "queue_full"
    assert full.headers.get("retry-after") == "5"
    for sender in senders:
        sender.join(60)
    waited = time.monotonic() - started
    assert len(answers) == MAX_LEN
    for r in answers:
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "no_worker"
        assert "carrier run --role worker" in error["hint"]
        assert "Traceback" not in r.text
    assert PICKUP - 0.5 <= waited < PICKUP + 10
    assert len(cluster.model.requests(CHAT)) == calls  # the API ran none of them itself
    assert stream_length(cluster) == 0  # withdrawn turns are deleted


def test_a_client_that_leaves_before_pickup_withdraws_its_turn(cluster: Cluster) -> None:
    for worker in cluster.workers:  # none running (the test before stopped them too)
        worker.stop()
    started = time.monotonic()
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{cluster.api.url}{AGENT}/messages",
            json={"room": room_name("leave"), "text": "never mind", "stream": True},
            headers=cluster.api.headers(),
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(": ping"):  # queued, waiting for a worker: leave now
                assert stream_length(cluster) == 1
                break
    deadline = time.monotonic() + PICKUP
    while stream_length(cluster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream_length(cluster) == 0
    assert time.monotonic() - started < PICKUP  # withdrawn, not timed out
