"""The autoposting loop (in process) and `carrier run --client instagram` (real process)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character.loader import load_character
from carrier_cli.clients.instagram.autopost import (
    autopost_loop,
    jittered_interval,
    next_media,
    post_next,
)
from carrier_cli.clients.instagram.journal import Journal
from carrier_cli.clients.instagram.options import InstagramOptions
from carrier_cli.config import load_settings
from tests.clients.instagram.cli_helpers import run_cli
from tests.clients.instagram.helpers import make_image
from tests.support.instagram_servers import InstagramEnv
from tests.support.model_server import ModelServerProcess

ROOT = Path(__file__).resolve().parents[3]


def write_character(
    path: Path, media: Path, *, hashtags: str = "[travel, sea]", interval: int = 240
) -> Path:
    path.write_text(
        "name: Marina\nusername: marina\nbio: [A sailor who photographs harbours.]\n"
        'topics: [harbours, boats]\npostExamples: ["Morning light on the quay."]\n'
        "clients:\n  instagram:\n"
        f"    media_folder: {media}\n    hashtags: {hashtags}\n"
        f"    post_interval_minutes: {interval}\n    interval_jitter_minutes: 0\n",
        encoding="utf-8",
    )
    return path


class StandInRuntime:
    """Only what the loop uses of AgentRuntime: the character and generate_post()."""

    def __init__(self, character: Any, captions: list[str] | None = None) -> None:
        self.character = character
        self.captions = captions or []
        self.calls = 0

    async def generate_post(
        self, *, topic: str | None = None, extra_instructions: str | None = None
    ) -> str:
        self.calls += 1
        assert extra_instructions and "Instagram" in extra_instructions
        return self.captions.pop(0) if self.captions else f"Harbour photo number {self.calls}"

    async def aclose(self) -> None:
        return None


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    for i, name in enumerate(["b.jpg", "a.png", "c.jpg"]):
        path = make_image(folder / name, (800, 800), color=(i * 60, 90, 30))
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    (folder / "notes.txt").write_text("not media")
    return folder


def test_next_media_is_the_oldest_and_intervals_jitter(media_dir: Path) -> None:
    assert next_media(media_dir) == media_dir / "b.jpg"
    import random

    rng = random.Random(4)
    values = {jittered_interval(10, 3, rng) for _ in range(20)}
    assert all(7 * 60 <= v <= 13 * 60 for v in values) and len(values) > 1
    assert jittered_interval(0.5, 0) == 60.0  # never faster than once a minute


async def test_loop_posts_every_file_survives_errors_and_stops(
    instagram_env: InstagramEnv, media_dir: Path, tmp_path: Path
) -> None:
    graph = instagram_env.graph
    bad = media_dir / "z-broken.jpg"
    bad.write_text("not a jpeg")
    os.utime(bad, (1_700_000_010, 1_700_000_010))
    graph.fail_next("limit", 100, None, message="Invalid parameter", times=1)  # round fails
    character = load_character(write_character(tmp_path / "marina.yaml", media_dir))
    runtime = StandInRuntime(character, ["First light #harbour"])
    options = InstagramOptions.from_settings(load_settings().settings)
    stop = asyncio.Event()

    async def stop_when_done() -> None:
        while (
            len(list((media_dir / "posted").glob("*"))) < 3 or not (media_dir / "failed").exists()
        ):
            await asyncio.sleep(0.02)
        stop.set()

    journal = await Journal.open(options.database_url)
    try:
        await asyncio.wait_for(
            asyncio.gather(
                autopost_loop(runtime, options, stop, interval=0.01, journal=journal),
                stop_when_done(),
            ),
            timeout=60,
        )
        rows = await journal.history()
    finally:
        await journal.close()
    assert len(graph.published) == 3
    assert graph.published[0]["caption"] == "First light #harbour\n\n#travel #sea"
    assert sorted(p.name for p in (media_dir / "posted").iterdir()) == ["a.png", "b.jpg", "c.jpg"]
    assert [p.name for p in (media_dir / "failed").iterdir()] == ["z-broken.jpg"]
    assert {r.character for r in rows} == {"Marina"} and all(r.published for r in rows)
    assert (media_dir / "notes.txt").exists()


async def test_quota_full_skips_the_round(
    instagram_env: InstagramEnv, media_dir: Path, tmp_path: Path
) -> None:
    instagram_env.graph.quota_usage = instagram_env.graph.quota_total
    character = load_character(write_character(tmp_path / "marina.yaml", media_dir))
    runtime = StandInRuntime(character)
    options = InstagramOptions.from_settings(load_settings().settings)
    journal = await Journal.open(options.database_url)
    try:
        assert await post_next(runtime, options, journal, media_dir) == "quota"
    finally:
        await journal.close()
    assert runtime.calls == 0 and not instagram_env.graph.containers


async def test_stop_between_steps_then_continue(
    instagram_env: InstagramEnv, media_dir: Path, tmp_path: Path
) -> None:
    graph = instagram_env.graph
    graph.script_statuses(["IN_PROGRESS"] * 30 + ["FINISHED"])
    character = load_character(write_character(tmp_path / "marina.yaml", media_dir))
    runtime = StandInRuntime(character)
    options = InstagramOptions.from_settings(load_settings().settings)
    stop = asyncio.Event()
    journal = await Journal.open(options.database_url)
    try:
        task = asyncio.create_task(post_next(runtime, options, journal, media_dir, stop))
        while not graph.containers:
            await asyncio.sleep(0.01)
        stop.set()
        assert await asyncio.wait_for(task, 30) == "stopped"
        [row] = await journal.history()
        assert row.last_step in ("container_created", "container_finished")
        assert row.lease_owner is None and not graph.published
        # The next round continues the same post (same caption, no second generation).
        result = await post_next(runtime, options, journal, media_dir, asyncio.Event())
    finally:
        await journal.close()
    assert result == "posted" and runtime.calls == 1 and len(graph.published) == 1
    assert len(graph.containers) == 1


# --- with the real runtime and the fake model server ----------------------------------------

POST_REPLY = (
    "<response><thought>harbour</thought><actions>REPLY</actions>"
    "<text>Boats asleep in the morning harbour</text></response>"
)


def model_env(model: ModelServerProcess) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": model.openai_base_url,
        "OPENAI_API_KEY": "sk-test-ig-0123456789",
        "CARRIER_MAX_RETRIES": "0",
        "CARRIER_EMBEDDING_PROVIDER": "openai",
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.service
@pytest.mark.slow
def test_generate_caption_end_to_end(
    instagram_env: InstagramEnv,
    model_server_process: ModelServerProcess,
    media_dir: Path,
    tmp_path: Path,
) -> None:
    character = write_character(tmp_path / "marina.yaml", media_dir, hashtags="[sea]")
    model_server_process.push(POST_REPLY)
    env = model_env(model_server_process)
    args = [
        "instagram",
        "post",
        str(media_dir / "a.png"),
        "--generate-caption",
        "--character",
        str(character),
    ]
    refused = subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={**os.environ, **env},
    )
    assert refused.returncode == 2, refused.stderr
    assert "Boats asleep in the morning harbour" in refused.stderr
    assert "Caption not approved" in refused.stderr and not instagram_env.graph.published

    model_server_process.push(POST_REPLY)
    result = run_cli(*args, "--yes", cwd=tmp_path, extra_env=env)
    assert result.returncode == 0, result.stderr
    [media] = instagram_env.graph.published
    assert media["caption"] == "Boats asleep in the morning harbour\n\n#sea"
    chats = len(model_server_process.requests("/v1/chat/completions"))
    again = run_cli(*args, "--yes", cwd=tmp_path, extra_env=env)
    assert "Already published" in again.stdout
    assert len(model_server_process.requests("/v1/chat/completions")) == chats


@pytest.mark.service
@pytest.mark.slow
def test_carrier_run_client_instagram(
    instagram_env: InstagramEnv,
    model_server_process: ModelServerProcess,
    media_dir: Path,
    tmp_path: Path,
) -> None:
    character = write_character(tmp_path / "marina.yaml", media_dir)
    model_server_process.push(POST_REPLY)
    process = subprocess.Popen(
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
        env={**os.environ, **model_env(model_server_process)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (media_dir / "posted" / "b.jpg").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no post within 90 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    [media] = instagram_env.graph.published
    assert media["caption"] == "Boats asleep in the morning harbour\n\n#travel #sea"
    assert (media_dir / "a.png").exists()  # one post per interval (240 min here)


async def test_media_refused_by_instagram_goes_to_failed(
    instagram_env: InstagramEnv, media_dir: Path, tmp_path: Path
) -> None:
    instagram_env.graph.fail_next("media", 36003, 2207009, message="Aspect ratio not supported")
    character = load_character(write_character(tmp_path / "marina.yaml", media_dir))
    options = InstagramOptions.from_settings(load_settings().settings)
    journal = await Journal.open(options.database_url)
    try:
        result = await post_next(StandInRuntime(character), options, journal, media_dir)
    finally:
        await journal.close()
    assert result == "refused"
    assert [p.name for p in (media_dir / "failed").iterdir()] == ["b.jpg"]


async def test_restricted_account_pauses_autoposting(
    instagram_env: InstagramEnv, media_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = instagram_env.graph
    graph.fail_next("media_publish", 25, 2207050, message="The user is restricted")
    character = load_character(write_character(tmp_path / "marina.yaml", media_dir))
    options = InstagramOptions.from_settings(load_settings().settings)
    stop = asyncio.Event()
    task = asyncio.create_task(
        autopost_loop(StandInRuntime(character), options, stop, interval=0.01)
    )
    async with asyncio.timeout(30):  # one round: image, FTP, container, a refused publish
        while "paused until Carrier restarts" not in caplog.text:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # fifty intervals: a round after the pause would show
    assert not task.done() and not graph.published
    assert len(graph.containers) == 1  # no further rounds after the restriction
    stop.set()
    await asyncio.wait_for(task, 10)
