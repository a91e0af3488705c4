"""Scheduled and drafted posts end to end: `post --at/--draft`, `queue ...`, `approve`,
`reject`, the publishing of due posts (in process and in real subprocesses, racing and
killed), FTP cleanup and the quota."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.clients.instagram.cli_helpers import carrier, popen, run_cli
from tests.clients.instagram.helpers import make_image
from tests.support.instagram_servers import InstagramEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli("instagram", *args, cwd=tmp_path, extra_env=env)


def queue_json(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    result = cli(tmp_path, "queue", "list", "--json", *extra)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def schedule(tmp_path: Path, name: str, caption: str, *options: str) -> dict[str, Any]:
    make_image(tmp_path / name, (800, 800))
    result = cli(tmp_path, "post", name, "--caption", caption, *options, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def due_soon(tmp_path: Path, name: str = "p.jpg", caption: str = "soon") -> int:
    data = schedule(tmp_path, name, caption, "--at", "+1s")
    time.sleep(1.1)
    return int(data["post_id"])


def test_at_queues_without_publishing_and_list_shows_it(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    result = cli(
        tmp_path,
        "post",
        "p.jpg",
        "--caption",
        "later",
        "--at",
        "2026-12-24 09:00",
        "--tz",
        "Europe/Paris",
    )
    assert result.returncode == 0, result.stderr
    assert "Queued post 1" in result.stdout
    assert "2026-12-24 08:00:00 UTC" in result.stdout and "09:00:00 CET" in result.stdout
    graph = instagram_env.graph
    assert graph.published == [] and graph.containers == {}  # nothing sent to Instagram
    assert instagram_env.published_files() == []  # nor uploaded
    rows = queue_json(tmp_path)
    assert [(r["post_id"], r["state"], r["scheduled_at"]) for r in rows] == [
        (1, "queued", "2026-12-24T08:00:00+00:00")
    ]
    assert rows[0]["scheduled_local"].startswith("2026-12-24T09:00:00+01:00")
    table = cli(tmp_path, "queue", "list")
    assert "queued" in table.stdout and "2026-12-24 08:00" in table.stdout
    assert "replaces" not in result.stdout
    # The same photo and caption with --draft: the post's one entry becomes a draft, and
    # the command says what it replaced (it used to say nothing).
    drafted = cli(tmp_path, "post", "p.jpg", "--caption", "later", "--draft")
    assert drafted.returncode == 0, drafted.stderr
    assert "Draft post 1" in drafted.stdout
    assert "replaces the post's earlier schedule entry (queued for 2026-12-24" in drafted.stdout
    requeued_json = schedule(tmp_path, "p.jpg", "later", "--at", "2026-12-24 09:00")
    assert requeued_json["replaced"] == {"state": "draft", "scheduled_at": None}
    assert queue_json(tmp_path)[0]["state"] == "queued"

    moved = cli(tmp_path, "queue", "reschedule", "1", "--at", "+2h")
    assert moved.returncode == 0 and "now goes out at" in moved.stdout
    assert queue_json(tmp_path)[0]["scheduled_at"] != rows[0]["scheduled_at"]

    nothing = cli(tmp_path, "queue", "run", "--json")
    assert json.loads(nothing.stdout)["published"] == [] and graph.published == []

    cancelled = cli(tmp_path, "queue", "cancel", "1")
    assert cancelled.returncode == 0 and "Cancelled post 1" in cancelled.stdout
    assert queue_json(tmp_path) == []
    assert queue_json(tmp_path, "--all")[0]["state"] == "cancelled"
    again = cli(tmp_path, "queue", "cancel", "1")
    assert again.returncode == 2 and "is cancelled" in again.stderr
    # neither `resume` nor the same `post` publishes a cancelled post behind the queue's back
    resumed = cli(tmp_path, "resume", "1")
    assert resumed.returncode == 2 and "was cancelled" in resumed.stderr
    assert cli(tmp_path, "post", "p.jpg", "--caption", "later").returncode == 2
    assert graph.published == []
    requeued = cli(tmp_path, "queue", "reschedule", "1", "--at", "+1h")
    assert requeued.returncode == 0 and queue_json(tmp_path)[0]["state"] == "queued"


def test_bad_at_bad_tz_and_bad_file_fail_now(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    past = cli(tmp_path, "post", "p.jpg", "--caption", "x", "--at", "2020-01-01 10:00")
    assert past.returncode == 2 and "--at" in past.stderr and "in the past" in past.stderr
    assert "+30m" in past.stderr.replace("\n  ", " ")
    tz = cli(tmp_path, "post", "p.jpg", "--caption", "x", "--at", "+1h", "--tz", "Nowhere/City")
    assert tz.returncode == 2 and "--tz `Nowhere/City`" in tz.stderr
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    bad = cli(tmp_path, "post", "broken.jpg", "--caption", "x", "--at", "+1h")
    assert bad.returncode == 2 and "broken.jpg" in bad.stderr
    assert queue_json(tmp_path, "--all") == []


def test_due_post_is_published_once_and_its_ftp_files_removed(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    env = {"CARRIER_INSTAGRAM_FTP_CLEANUP": "after_publish"}
    post_id = due_soon(tmp_path)
    result = cli(tmp_path, "queue", "run", env=env)
    assert result.returncode == 0, result.stderr
    assert f"Published 1 due post(s): {post_id}" in result.stdout
    graph = instagram_env.graph
    assert len(graph.published) == 1 and graph.published[0]["caption"] == "soon"
    # Instagram downloaded the file before the container was FINISHED; then it went.
    assert graph.downloads and instagram_env.published_files() == []
    status = json.loads(cli(tmp_path, "status", str(post_id), "--json").stdout)[0]
    assert status["status"] == "published"
    assert (
        status["options"]["ftp_cleanup"]["deleted"]
        and not status["options"]["ftp_cleanup"]["failed"]
    )
    assert queue_json(tmp_path, "--all")[0]["state"] == "published"
    again = cli(tmp_path, "queue", "run", "--json", env=env)
    assert json.loads(again.stdout)["published"] == [] and len(graph.published) == 1


def test_keep_leaves_the_files(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    due_soon(tmp_path)
    assert cli(tmp_path, "queue", "run").returncode == 0  # the fixture sets keep
    assert len(instagram_env.graph.published) == 1 and len(instagram_env.published_files()) == 1


def test_draft_approve_publishes_and_reject_never(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    first = schedule(tmp_path, "a.jpg", "first", "--draft")
    second = schedule(tmp_path, "b.jpg", "second", "--draft")
    assert first["state"] == "draft" and first["scheduled_at"] is None
    assert cli(tmp_path, "queue", "run").returncode == 0
    assert instagram_env.graph.published == []  # drafts wait
    early = cli(tmp_path, "resume", str(first["post_id"]))
    assert early.returncode == 2 and "draft waiting for approval" in early.stderr
    assert instagram_env.graph.published == []

    shown = cli(tmp_path, "queue", "show", str(first["post_id"]))
    assert "first" in shown.stdout and "a.jpg" in shown.stdout and "draft" in shown.stdout
    approved = cli(tmp_path, "approve", str(first["post_id"]))
    assert approved.returncode == 0, approved.stderr
    assert "caption" in approved.stdout and "first" in approved.stdout
    assert "a.jpg" in approved.stdout and "Approved post" in approved.stdout
    rejected = cli(tmp_path, "reject", str(second["post_id"]), "--reason", "blurry")
    assert rejected.returncode == 0 and "Rejected post" in rejected.stdout

    assert cli(tmp_path, "queue", "run").returncode == 0
    graph = instagram_env.graph
    assert [m["caption"] for m in graph.published] == ["first"]
    rows = {r["post_id"]: r for r in queue_json(tmp_path, "--all")}
    assert rows[first["post_id"]]["state"] == "published"
    assert rows[second["post_id"]]["state"] == "rejected"
    assert rows[second["post_id"]]["reason"] == "blurry"
    twice = cli(tmp_path, "approve", str(second["post_id"]))
    assert twice.returncode == 2 and "is rejected" in twice.stderr


def test_quota_exhausted_waits_then_publishes(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    graph = instagram_env.graph
    graph.quota_usage = graph.quota_total = 3
    post_id = due_soon(tmp_path)
    result = cli(tmp_path, "queue", "run")
    assert result.returncode == 0, result.stderr
    assert "Publishing limit reached (3 of 3)" in result.stdout
    assert graph.published == [] and graph.containers == {}
    row = queue_json(tmp_path)[0]
    assert row["state"] == "queued" and row["attempts"] == 0  # waiting is not failing
    graph.quota_usage = 0
    assert cli(tmp_path, "queue", "run").returncode == 0
    assert len(graph.published) == 1
    assert queue_json(tmp_path, "--all")[0]["post_id"] == post_id


def test_transient_failure_is_retried_then_published(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    graph = instagram_env.graph
    graph.fail_next("media", 2, None, http_status=500, times=10)  # beyond the client's retries
    due_soon(tmp_path)
    first = cli(tmp_path, "queue", "run", "--json")
    assert json.loads(first.stdout)["retrying"] == [1], first.stderr
    row = queue_json(tmp_path)[0]
    assert row["state"] == "queued" and row["attempts"] == 1 and row["reason"]
    graph.failures.clear()
    time.sleep(1.0)  # the back-off: 30 x 0.02 s
    assert cli(tmp_path, "queue", "run").returncode == 0
    assert len(graph.published) == 1


def test_two_processes_racing_for_a_due_post_publish_once(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    instagram_env.graph.delay = 0.05  # every Graph call takes a while: the runs overlap
    due_soon(tmp_path)
    procs = [popen("instagram", "queue", "run", "--json", cwd=tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    published = [json.loads(out)["published"] for out, _ in outputs]
    assert sorted(map(len, published)) == [0, 0, 1]
    assert len(instagram_env.graph.published) == 1
    assert len(instagram_env.graph.containers) == 1


@pytest.mark.parametrize("step", ["uploaded", "publishing", "media_publish", "published"])
def test_killed_during_a_scheduled_publish_posts_exactly_once_after_restart(
    instagram_env: InstagramEnv, tmp_path: Path, step: str
) -> None:
    post_id = due_soon(tmp_path, caption="crash")
    cleanup = {"CARRIER_INSTAGRAM_FTP_CLEANUP": "after_publish"}
    crashed = carrier(
        "instagram",
        "queue",
        "run",
        cwd=tmp_path,
        extra_env={**cleanup, "CARRIER_TEST_CRASH_AFTER": step},
    )
    assert crashed.returncode == 137, crashed.stderr
    assert queue_json(tmp_path)[0]["state"] == "claimed"  # the dead process's claim
    restarted = carrier("instagram", "queue", "run", "--json", cwd=tmp_path, extra_env=cleanup)
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["published"] == [post_id]
    graph = instagram_env.graph
    assert len(graph.published) == 1 and graph.published[0]["caption"] == "crash"
    status = json.loads(cli(tmp_path, "status", str(post_id), "--json").stdout)[0]
    assert status["status"] == "published" and status["media_id"] == graph.published[0]["id"]
    assert queue_json(tmp_path, "--all")[0]["state"] == "published"
    assert instagram_env.published_files() == []  # cleaned up, even after a crash at the end


def test_a_failed_ftp_delete_is_recorded_and_the_post_stays_published(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    env = {"CARRIER_INSTAGRAM_FTP_CLEANUP": "after_publish"}
    post_id = due_soon(tmp_path)
    instagram_env.ftp.fail_deletes()
    result = cli(tmp_path, "queue", "run", env=env)
    assert result.returncode == 0, result.stderr
    assert len(instagram_env.graph.published) == 1
    assert len(instagram_env.published_files()) == 1  # still there: the delete failed
    status = json.loads(cli(tmp_path, "status", str(post_id), "--json").stdout)[0]
    assert status["status"] == "published"
    [(name, reason)] = status["options"]["ftp_cleanup"]["failed"].items()
    assert name.endswith(".jpg") and "421" in reason
    assert queue_json(tmp_path, "--all")[0]["state"] == "published"


def test_a_post_for_a_character_file_is_journaled_by_its_name(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    (tmp_path / "marina.yaml").write_text("name: Marina\nbio: [A sailor.]\n", encoding="utf-8")
    data = schedule(tmp_path, "p.jpg", "hers", "--character", "marina.yaml", "--at", "+1h")
    assert data["character"] == "Marina"  # what `carrier run --character marina.yaml` takes


def test_status_and_history_say_a_queued_post_waits_and_a_cancelled_one_was_cancelled(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    queued = cli(tmp_path, "post", "p.jpg", "--caption", "later", "--at", "2026-12-24 09:00")
    assert queued.returncode == 0, queued.stderr
    # Before, both printed the journal's first step, `prepared`, as if it were stuck.
    for command in (("status",), ("status", "1"), ("history",)):
        shown = cli(tmp_path, *command)
        assert shown.returncode == 0, shown.stderr
        # A table may wrap the cell (its width is the console's, set once per process).
        words = " ".join(shown.stdout.replace("│", " ").split())
        assert "queued for" in words and "09:00 UTC" in words, (command, shown.stdout)
        if command == ("status", "1"):
            assert "queued for 2026-12-24 09:00 UTC" in shown.stdout
        # (the detail view still names the last completed step, which is `prepared`)
        assert "prepared" not in shown.stdout.replace("completed step  prepared", "")
    [row] = json.loads(cli(tmp_path, "history", "--json").stdout)
    assert row["status"] == "prepared" and row["schedule"]["state"] == "queued"
    assert cli(tmp_path, "queue", "cancel", "1").returncode == 0
    assert "cancelled" in cli(tmp_path, "history").stdout
    assert "cancelled" in cli(tmp_path, "status", "1").stdout
