"""The running client and the schedule: `require_approval` drafts, approved posts and
scheduled ones published by the loop beside the autoposter, one claim per post on both
database backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character.loader import load_character
from carrier_cli.clients.instagram import queueing
from carrier_cli.clients.instagram.approval import with_scheduler
from carrier_cli.clients.instagram.autopost import autopost_loop, post_next
from carrier_cli.clients.instagram.journal import Journal, make_owner, now
from carrier_cli.clients.instagram.options import InstagramOptions
from carrier_cli.clients.instagram.schedule import Schedule
from carrier_cli.config import Settings, load_settings
from carrier_cli.errors import InputError
from tests.clients.instagram.cli_helpers import run_cli
from tests.clients.instagram.helpers import make_image
from tests.clients.instagram.test_autopost import StandInRuntime, model_env, write_character
from tests.support.instagram_servers import InstagramEnv
from tests.support.model_server import ModelServerProcess


def approval_character(tmp_path: Path, media: Path) -> Path:
    path = write_character(tmp_path / "marina.yaml", media)
    path.write_text(path.read_text() + "    require_approval: true\n", encoding="utf-8")
    return path


@pytest.mark.service
async def test_require_approval_drafts_then_the_running_client_publishes_once_approved(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    make_image(media / "quay.jpg", (800, 800))
    character = load_character(approval_character(tmp_path, media))
    runtime = StandInRuntime(character, ["Low tide at the quay"])
    options = InstagramOptions.from_settings(load_settings().settings)
    graph = instagram_env.graph
    journal = await Journal.open(options.database_url)
    try:
        assert await post_next(runtime, options, journal, media) == "drafted"
        assert graph.published == [] and (media / "drafts" / "quay.jpg").is_file()
        [item] = await queueing.items_in(journal)
        assert item.entry.state == "draft" and item.record.character == "Marina"
        assert item.record.caption.startswith("Low tide at the quay")
        assert item.entry.prompt and "Instagram image" in item.entry.prompt
        assert item.media() == [str((media / "drafts" / "quay.jpg").resolve())]
        assert await post_next(runtime, options, journal, media) == "empty"

        approved = await queueing.decide_in(journal, item.entry.post_id, "approve", None)
        assert approved.entry.state == "approved" and approved.entry.scheduled_at is not None
    finally:
        await journal.close()

    stop = asyncio.Event()

    async def stop_when_published() -> None:
        while not graph.published:
            await asyncio.sleep(0.02)
        stop.set()

    await asyncio.wait_for(
        asyncio.gather(
            with_scheduler(
                runtime,
                options,
                stop,
                lambda *a, **kw: autopost_loop(*a, interval=0.05, **kw),
                interval=0.05,
            ),
            stop_when_published(),
        ),
        timeout=60,
    )
    assert [m["caption"] for m in graph.published] == [item.record.caption]
    journal = await Journal.open(options.database_url)
    try:
        [done] = await queueing.items_in(journal, None)
        assert done.entry.state == "published" and done.record.published
    finally:
        await journal.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = (
        str(tmp_path / "s.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    return load_settings(overrides={"database_url": url}, use_stored_keys=False).settings


async def test_one_claim_wins_and_a_stale_claim_is_taken_over(
    db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    journals = [await Journal.open(db_settings.database_url) for _ in range(4)]
    try:
        j = journals[0]
        record, _ = await j.find_or_create("k", kind="image", caption="c", items=[], options={})
        schedule = Schedule(j)
        await schedule.put(
            record.id, state="queued", scheduled_at=now() + timedelta(hours=1), tz=None, prompt="p"
        )
        assert await schedule.claim_due(make_owner()) is None  # not due yet
        await schedule.reschedule(record.id, now() - timedelta(seconds=1), "Europe/Paris")
        owners = [f"elsewhere:{i}:x" for i in range(4)]  # other hosts: never "dead here"
        wins = await asyncio.gather(
            *(Schedule(jj).claim_due(o) for jj, o in zip(journals, owners, strict=True))
        )
        claimed = [w for w in wins if w is not None]
        assert len(claimed) == 1 and claimed[0].state == "claimed"
        assert await schedule.claim_due("another:1:y") is None  # a fresh claim is respected
        with pytest.raises(InputError, match="is claimed"):
            await schedule.cancel(record.id)
        from carrier_cli.clients.instagram import schedule as schedule_mod

        monkeypatch.setattr(schedule_mod, "CLAIM_STALE", -1.0)  # its owner stopped refreshing
        taken = await schedule.claim_due("another:1:y")
        assert taken is not None and taken.claim_owner == "another:1:y"
        assert not await schedule.finish(record.id, claimed[0].claim_owner or "", "published")
        assert await schedule.finish(record.id, "another:1:y", "published")
        assert (await schedule.require(record.id)).state == "published"
    finally:
        for jj in journals:
            await jj.close()


async def test_schedule_table_matches_its_migration(db_settings: Settings) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from carrier_cli.memory.schema import METADATA

    j = await Journal.open(db_settings.database_url)
    try:

        def diffs(connection: object) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": False})  # type: ignore[arg-type]
            return [
                d for d in compare_metadata(context, METADATA) if "instagram_schedule" in repr(d)
            ]

        async with j.engine.connect() as conn:
            assert await conn.run_sync(diffs) == []
    finally:
        await j.close()
    assert os.environ.get("CARRIER_HOME")


def _start_run(character: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "carrier_cli", "run", "--client", "instagram"]
    return subprocess.Popen(
        [*command, "--character", str(character)],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(condition: Any, process: subprocess.Popen[str], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


@pytest.mark.service
@pytest.mark.slow
def test_carrier_run_killed_during_a_scheduled_publish_posts_once_after_restart(
    instagram_env: InstagramEnv,
    model_server_process: ModelServerProcess,
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    media.mkdir()  # empty: the autoposter has nothing, only the schedule posts
    character = write_character(tmp_path / "marina.yaml", media)
    make_image(tmp_path / "p.jpg", (800, 800))
    queued = run_cli(
        "instagram", "post", "p.jpg", "--caption", "scheduled", "--at", "+1s", cwd=tmp_path
    )
    assert queued.returncode == 0, queued.stderr
    graph = instagram_env.graph
    # Processing that lasts until the kill: a fixed few seconds of it (60 polls) could end
    # before a loaded machine got round to the kill, and the first run would publish.
    graph.script_statuses(["IN_PROGRESS"] * 100_000)
    env = {**model_env(model_server_process), "CARRIER_INSTAGRAM_QUEUE_POLL_INTERVAL": "0.2"}
    first = _start_run(character, tmp_path, env)
    try:
        # Polled: the container id is journaled. A kill between the container's creation
        # and its journal record is another case: the restart makes a second container
        # (never published twice; an unpublished container expires after 24 hours).
        _wait(lambda: any(c.polls for c in graph.containers.values()), first, "a status poll")
        first.kill()  # SIGKILL while Instagram is processing the container
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert graph.published == []
    graph.next_statuses.clear()
    for container in graph.containers.values():  # Instagram is done processing it now
        container.statuses = ["FINISHED"]
    second = _start_run(character, tmp_path, env)
    try:
        _wait(lambda: graph.published, second, "the post")
        time.sleep(1.0)  # another pass finds nothing more to publish
        second.send_signal(signal.SIGTERM)
        _out, err = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate()
    assert second.returncode == 0, err
    assert [m["caption"] for m in graph.published] == ["scheduled"]
    assert len(graph.containers) == 1  # the restart continued with the same container
    listed = run_cli("instagram", "queue", "list", "--all", "--json", cwd=tmp_path)
    assert [r["state"] for r in json.loads(listed.stdout)] == ["published"]


@pytest.mark.service
@pytest.mark.slow
def test_generated_caption_draft_shows_the_prompt_and_at_asks_for_approval(
    instagram_env: InstagramEnv,
    model_server_process: ModelServerProcess,
    tmp_path: Path,
) -> None:
    from tests.clients.instagram.test_autopost import POST_REPLY

    media = tmp_path / "media"
    media.mkdir()
    character = write_character(tmp_path / "marina.yaml", media, hashtags="[sea]")
    make_image(tmp_path / "a.jpg", (800, 800))
    make_image(tmp_path / "b.jpg", (800, 800), color=(10, 200, 30))
    env = model_env(model_server_process)
    generate = ["--generate-caption", "--character", str(character)]

    model_server_process.push(POST_REPLY)
    drafted = run_cli(
        "instagram", "post", "a.jpg", *generate, "--draft", cwd=tmp_path, extra_env=env
    )
    assert drafted.returncode == 0, drafted.stderr
    assert "Draft post 1" in drafted.stdout and "once approved" in drafted.stdout
    shown = run_cli("instagram", "queue", "show", "1", cwd=tmp_path)
    assert "Boats asleep in the morning harbour" in shown.stdout and "#sea" in shown.stdout
    assert "Write the caption of an Instagram image (a.jpg)" in shown.stdout  # what it was asked
    assert str(tmp_path / "a.jpg") in shown.stdout

    model_server_process.push(POST_REPLY)
    command = [sys.executable, "-m", "carrier_cli", "instagram", "post", "b.jpg"]
    refused = subprocess.run(
        [*command, *generate, "--at", "+1h"],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env={**os.environ, **env, "CARRIER_HOME": os.environ["CARRIER_HOME"]},
    )
    assert refused.returncode == 2 and "nothing was queued" in refused.stderr
    assert instagram_env.graph.published == []
    listed = run_cli("instagram", "queue", "list", "--json", cwd=tmp_path)
    assert [r["post_id"] for r in json.loads(listed.stdout)] == [1]


async def test_live_claims_never_hide_the_due_posts_behind_them(db_settings: Settings) -> None:
    j = await Journal.open(db_settings.database_url)
    try:
        schedule = Schedule(j)
        for i in range(60):
            record, _ = await j.find_or_create(
                f"k{i}", kind="image", caption="c", items=[], options={}
            )
            await schedule.put(record.id, state="queued", scheduled_at=now(), tz=None, prompt=None)
        claimed: list[int] = []
        while (entry := await schedule.claim_due(f"elsewhere:{len(claimed)}:x")) is not None:
            claimed.append(entry.post_id)
        assert sorted(claimed) == list(range(1, 61))  # 60 live claims, every post taken once
    finally:
        await j.close()
