"""Per-room order across processes: two real `carrier serve` on one PostgreSQL database,
a burst into one room sent to both at once, and the fake model server's log as the
witness that the turns ran one after the other, each seeing the room's earlier turns."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest

from tests.support.api_server import ServeProcess, start_serve, write_character
from tests.support.model_server import (
    ModelServerProcess,
    RecordedRequest,
    start_server_process,
)
from tests.support.postgres import _run, with_database

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.postgres]

LATENCY = 0.3  # seconds the fake model takes for every answer: turns that overlap show it
CHARACTER_EXTRA = "settings:\n  fact_interval: 1000000\n"  # no background fact calls
ENV = {"CARRIER_API_RATE_LIMIT": "0"}
AGENT = "/v1/agents/carrier"
CHAT = "/v1/chat/completions"
BURST = 10


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    server = start_server_process(latency=LATENCY)
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)


@pytest.fixture(scope="module")
def servers(
    model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str
) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two `carrier serve` processes (own homes) on one fresh PostgreSQL database."""
    name = f"carrier_rooms_{uuid.uuid4().hex[:12]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    env = {**ENV, "CARRIER_DATABASE_URL": with_database(postgres_admin_url, name)}
    root = tmp_path_factory.mktemp("two-serves")
    character = write_character(root / "carrier.yaml", extra=CHARACTER_EXTRA)
    started: list[ServeProcess] = []
    try:
        # One after the other: the first creates the schema and prints the admin key,
        # which the second (same database) accepts too. A first message sets the vector
        # column's dimension before the second starts (a process that pooled connections
        # before that change gets asyncpg's InvalidCachedStatementError once: not this
        # test's subject).
        first = start_serve(root / "a", model.url, characters=[character], env=env)
        started.append(first)
        warm = httpx.post(
            f"{first.url}{AGENT}/messages",
            json={"room": "warm-up", "text": "hello"},
            headers=first.headers(),
            timeout=60,
        )
        assert warm.status_code == 200, warm.text
        started.append(start_serve(root / "b", model.url, characters=[character], env=env))
        yield started[0], started[1]
    finally:
        for served in started:
            with contextlib.suppress(Exception):
                served.terminate()
        with contextlib.suppress(Exception):
            _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def generations(model: ModelServerProcess, texts: set[str]) -> list[RecordedRequest]:
    """The reply generations of the room whose messages are `texts`, in the order they
    reached the model."""
    found = [
        r
        for r in model.requests(CHAT)
        if "<response>" in r.prompt_text and any(t in r.prompt_text for t in texts)
    ]
    return sorted(found, key=lambda r: r.time)


def test_a_burst_into_one_room_runs_one_turn_at_a_time_across_two_servers(
    servers: tuple[ServeProcess, ServeProcess], model: ModelServerProcess
) -> None:
    a, b = servers
    key = a.key
    assert key, a.stdout
    room = f"burst-{uuid.uuid4().hex[:8]}"
    texts = [f"burst message {i:02d} {uuid.uuid4().hex[:6]}" for i in range(BURST)]
    model.reset()

    def send(i: int) -> httpx.Response:
        server = (a, b)[i % 2]
        return httpx.post(
            f"{server.url}{AGENT}/messages",
            json={"room": room, "text": texts[i], "sender": {"id": "u1", "name": "Ada"}},
            headers=a.headers(key),
            timeout=120,
        )

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(send, range(BURST)))
    for answer in answers:
        assert answer.status_code == 200, answer.text + a.stderr[-3000:] + b.stderr[-3000:]

    runs = generations(model, set(texts))
    assert len(runs) == BURST, [r.prompt_text[-800:] for r in runs]  # one generation each
    seen: list[str] = []
    for k, run in enumerate(runs):
        entries = conversation(run.prompt_text)
        if k:
            # The model takes LATENCY per answer: a generation starting sooner after the
            # one before overlapped it.
            gap = run.time - runs[k - 1].time
            assert gap >= LATENCY * 0.95, f"generation {k} started {gap:.3f}s after {k - 1}"
        # It sees the reply of every earlier turn, whichever server ran it (so it started
        # after that reply was stored), and no more: no turn ran beside it.
        replies = [e for e in entries if e.startswith("Carrier: ")]
        assert len(replies) == k, f"turn {k} sees {len(replies)} replies:\n" + "\n".join(entries)
        # And everything the turn before saw (nothing of the room lost in between).
        assert set(seen) <= set(entries), f"turn {k} lost {set(seen) - set(entries)}"
        seen = entries
    # The last turn started after every message was stored: it sees them all.
    assert {f"Ada: {t}" for t in texts} <= set(seen)
    for answer in answers:
        assert answer.json()["reply"]["text"].startswith("Echo: "), answer.text
    for server in (a, b):
        assert server.stderr.count("POST /v1/agents/carrier/messages 200") >= BURST // 2


def conversation(prompt: str) -> list[str]:
    """The `<conversation>` entries of a reply prompt, without their `(when)` prefixes."""
    block = prompt.rpartition("<conversation>")[2].partition("</conversation>")[0]
    return [line.partition(") ")[2] for line in block.strip().splitlines() if line.startswith("(")]
