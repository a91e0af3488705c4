"""Leadership of the Instagram autoposter: two real `carrier run --client instagram` on one
PostgreSQL database, the fake Graph API, FTP and HTTP servers; one posts, the other stands
by; killed with -9, the poster's lease ends with its connection and the other takes over
and publishes the next due post exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carrier_cli.cluster.leader import RETRY
from tests.clients.instagram.helpers import make_image
from tests.support.instagram_servers import InstagramEnv
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
TAKEOVER = RETRY + 10.0  # seconds from the kill to the other process's post, at most
STANDBY = "standing by"
RUN = [sys.executable, "-m", "carrier_cli", "run", "--client", "instagram", "--character"]


def write_character(path: Path, media: Path) -> Path:
    path.write_text(
        "name: Marina\nusername: marina\nbio: [A sailor who photographs harbours.]\n"
        "clients:\n  instagram:\n"
        f"    media_folder: {media}\n    hashtags: [sea]\n"
        "    post_interval_minutes: 240\n    interval_jitter_minutes: 0\n",
        encoding="utf-8",
    )
    return path


def start(character: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RUN, str(character)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(check: object, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


async def backdate_last_post(url: str) -> None:
    """Make the next post due now (the interval is 4 h): the journal's clock, not a sleep."""
    from sqlalchemy import text

    from carrier_cli.memory.backends import make_engine
    from carrier_cli.memory.urls import normalise_url

    engine = make_engine(normalise_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE instagram_posts SET published_at = published_at - interval '1 day'")
            )
    finally:
        await engine.dispose()


def test_two_autoposters_one_posts_and_the_other_takes_over_after_kill_9(
    instagram_env: InstagramEnv,
    model_server_process: ModelServerProcess,
    tmp_path: Path,
    postgres_url: str,
) -> None:
    graph = instagram_env.graph
    media = tmp_path / "media"
    media.mkdir()
    for i, name in enumerate(["b.jpg", "a.png", "c.jpg"]):
        path = make_image(media / name, (800, 800), color=(i * 60, 90, 30))
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    character = write_character(tmp_path / "marina.yaml", media)
    env = {
        **os.environ,
        "OPENAI_BASE_URL": model_server_process.openai_base_url,
        "OPENAI_API_KEY": "sk-test-ig-0123456789",
        "CARRIER_MAX_RETRIES": "0",
        "DATABASE_URL": postgres_url,
        "PYTHONPATH": str(ROOT),
    }
    # The schema first, so the two processes do not both create it.
    init = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "db", "init"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    processes = [start(character, tmp_path, env) for _ in range(2)]
    logs: list[list[str]] = [[], []]

    def pump(index: int) -> None:
        stream = processes[index].stderr
        assert stream is not None
        for line in stream:
            logs[index].append(line)

    import threading

    for index in range(2):
        threading.Thread(target=pump, args=(index,), daemon=True).start()
    try:
        wait_for(lambda: len(graph.published) >= 1, 90, "no first post")
        wait_for(
            lambda: any(STANDBY in "".join(log) for log in logs),
            30,
            "no standby" + "".join(logs[0]) + "=====" + "".join(logs[1]),
        )
        leader = next(i for i in range(2) if STANDBY not in "".join(logs[i]))
        other = 1 - leader
        time.sleep(RETRY + 1.0)  # the standby keeps standing by: one post, one caption
        assert len(graph.published) == 1, graph.published
        assert len(model_server_process.requests("/v1/chat/completions")) == 1
        wait_for(lambda: (media / "posted" / "b.jpg").exists(), 30, "b.jpg not moved")

        asyncio.run(backdate_last_post(postgres_url))
        processes[leader].send_signal(signal.SIGKILL)
        processes[leader].wait(10)
        killed = time.monotonic()
        posted = wait_for(lambda: len(graph.published) >= 2, TAKEOVER + 60, "no takeover post")
        assert posted - killed < TAKEOVER + 30, f"took over after {posted - killed:.1f} s"
        wait_for(lambda: (media / "posted" / "a.png").exists(), 30, "a.png not moved")
        time.sleep(2.0)  # nothing more: the next post is 4 h away again
        assert len(graph.published) == 2, graph.published
        assert processes[other].poll() is None, "".join(logs[other])
        assert "took over" in "".join(logs[other])
        assert sorted(p.name for p in (media / "posted").iterdir()) == ["a.png", "b.jpg"]
        assert (media / "c.jpg").exists()
        processes[other].send_signal(signal.SIGTERM)
        assert processes[other].wait(30) == 0, "".join(logs[other])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
