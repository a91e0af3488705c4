"""kill -9 during a comment reply: a real `carrier run --client instagram` is killed after
the fake Graph API created its reply and before the answer reached it (so before the
reply was recorded); the restarted process finds the reply on Instagram, records it and
posts nothing: exactly one reply, and no second turn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carrier_cli.memory import comment_replies as rows
from carrier_cli.memory.store import MemoryStore
from tests.support.instagram_servers import FakeGraph
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
ANSWER = "Aye, that is Honfleur at dawn."


def start(tmp_path: Path, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    character = tmp_path / "marina.yaml"
    log = (tmp_path / log_name).open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carrier_cli",
            "run",
            "--client",
            "instagram",
            "--character",
            str(character),
        ],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def row_of(database_url: str, comment_id: str) -> rows.CommentReply | None:
    async with await MemoryStore.open(database_url) as store:
        return await rows.get(store, comment_id)


async def test_kill_9_between_the_reply_and_its_record(
    tmp_path: Path, fake_graph: FakeGraph, model_server_process: ModelServerProcess
) -> None:
    (tmp_path / "marina.yaml").write_text(
        "name: Marina\nusername: marina\nbio: [A sailor.]\nsettings:\n  fact_interval: 1000000\n"
        "clients:\n  instagram:\n    reply_to_comments: true\n",
        encoding="utf-8",
    )
    database_url = f"sqlite:///{tmp_path / 'memory.db'}"
    env = {
        "INSTAGRAM_ACCOUNT_ID": fake_graph.account_id,
        "INSTAGRAM_ACCESS_TOKEN": fake_graph.token,
        "CARRIER_GRAPH_API_BASE": fake_graph.url,
        "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
        "CARRIER_INSTAGRAM_COMMENT_POLL_INTERVAL": "0.2",
        "OPENAI_BASE_URL": model_server_process.openai_base_url,
        "OPENAI_API_KEY": "sk-test-ig-0123456789",
        "CARRIER_MAX_RETRIES": "0",
        "CARRIER_EMBEDDING_PROVIDER": "openai",
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
    }
    media = fake_graph.comments.add_post("Dawn at the harbour")
    comment = fake_graph.comments.add_comment(media, "Is this Honfleur?")
    model_server_process.push(
        f"<response><thought>yes</thought><actions>REPLY</actions><text>{ANSWER}</text></response>"
    )
    fake_graph.comments.reply_delay = 60.0  # the reply exists; its answer is held back

    first = start(tmp_path, env, "first.log")
    try:
        assert fake_graph.comments.replied.wait(60), (tmp_path / "first.log").read_text()
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    crashed = await row_of(database_url, comment)
    assert crashed is not None and crashed.status == "pending" and crashed.reply_text == ANSWER
    assert len(fake_graph.comments.replies_by_account(comment)) == 1
    chats = len(model_server_process.requests("/v1/chat/completions"))

    fake_graph.comments.reply_delay = 0.0
    second = start(tmp_path, env, "second.log")
    try:
        deadline = time.monotonic() + 60
        while True:
            row = await row_of(database_url, comment)
            if row is not None and row.status == "replied":
                break
            assert second.poll() is None, (tmp_path / "second.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "second.log").read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # several more polls
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "second.log").read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    [reply] = fake_graph.comments.replies_by_account(comment)
    assert reply.text == ANSWER and row.reply_id == reply.id
    assert len(model_server_process.requests("/v1/chat/completions")) == chats
    assert "already answered" in (tmp_path / "second.log").read_text()
