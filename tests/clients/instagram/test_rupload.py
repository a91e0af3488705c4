"""Reels through Meta's resumable upload (`instagram_reel_upload: resumable`): the
container first (upload_type=resumable), the bytes to its upload URI, resumed at Meta's
offset after a cut connection or a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clients.instagram.cli_helpers import carrier, run_cli
from tests.clients.instagram.helpers import make_image
from tests.clients.instagram.videos import make_video
from tests.support.instagram_servers import InstagramEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]

RESUMABLE = {"CARRIER_INSTAGRAM_REEL_UPLOAD": "resumable"}


def rupload_posts(env: InstagramEnv) -> list[str]:
    return [path for method, path in env.graph.requests if path.startswith("/ig-api-upload/")]


def test_reel_goes_to_the_upload_host_and_its_cover_by_ftp(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "r.mp4", seconds=4)
    make_image(tmp_path / "c.jpg", (1080, 1920))
    result = run_cli(
        "instagram", "post", "r.mp4", "--caption", "rupload", "--cover", "c.jpg",
        "--collaborator", "a", cwd=tmp_path, extra_env=RESUMABLE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    graph = instagram_env.graph
    container = graph.containers[graph.published[0]["container"]]
    assert container.params["upload_type"] == "resumable" and "video_url" not in container.params
    assert container.params["cover_url"].endswith(".jpg")
    assert json.loads(container.params["collaborators"]) == ["a"]
    assert bytes(container.uploaded or b"") == clip.read_bytes()
    assert len(rupload_posts(instagram_env)) == 1
    # Only the cover went through FTP and was fetched over HTTP.
    assert [p.suffix for p in instagram_env.published_files()] == [".jpg"]
    assert all(url.endswith(".jpg") for url, _, _ in graph.downloads)


def test_a_cut_upload_resumes_at_metas_offset(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "r.mp4", seconds=4, fps=60)
    size = clip.stat().st_size
    assert size > 20_000
    instagram_env.graph.drop_rupload_after = 12_000
    result = run_cli(
        "instagram", "post", "r.mp4", "--caption", "cut", cwd=tmp_path, extra_env=RESUMABLE
    )
    assert result.returncode == 0, result.stderr
    assert "resumed at byte 12000" in result.stderr
    container = instagram_env.graph.containers[instagram_env.graph.published[0]["container"]]
    assert bytes(container.uploaded or b"") == clip.read_bytes()
    assert len(rupload_posts(instagram_env)) == 2 and instagram_env.published_files() == []


def test_a_crash_after_the_container_resumes_the_same_container(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_video(tmp_path / "r.mp4", seconds=4)
    args = ["instagram", "post", "r.mp4", "--caption", "crash"]
    env = {**RESUMABLE, "CARRIER_TEST_CRASH_AFTER": "resumable_container"}
    crashed = carrier(*args, cwd=tmp_path, extra_env=env)
    assert crashed.returncode == 137, crashed.stderr
    assert len(instagram_env.graph.containers) == 1
    again = run_cli(*args, cwd=tmp_path, extra_env=RESUMABLE)
    assert again.returncode == 0, again.stderr
    assert len(instagram_env.graph.containers) == 1 and len(instagram_env.graph.published) == 1


def test_a_refused_video_recreates_the_container_on_resume(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    """Processing fails (ERROR): the file lived in that container, so the resume creates
    a new one and sends the file again."""
    make_video(tmp_path / "r.mp4", seconds=4)
    instagram_env.graph.script_statuses(["IN_PROGRESS", "ERROR"])
    failed = run_cli(
        "instagram", "post", "r.mp4", "--caption", "err", cwd=tmp_path, extra_env=RESUMABLE
    )
    assert failed.returncode == 1 and "failed processing" in failed.stderr
    resumed = run_cli("instagram", "resume", "1", cwd=tmp_path, extra_env=RESUMABLE)
    assert resumed.returncode == 0, resumed.stderr
    assert len(instagram_env.graph.containers) == 2 and len(rupload_posts(instagram_env)) == 2


def test_cleanup_after_publishing_deletes_the_cover_and_skips_the_uploaded_video(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    """The video never was on the FTP server: deleting it would fail and be reported."""
    make_video(tmp_path / "r.mp4", seconds=4)
    make_image(tmp_path / "c.jpg", (1080, 1920))
    result = run_cli(
        "instagram", "post", "r.mp4", "--caption", "tidy", "--cover", "c.jpg", cwd=tmp_path,
        extra_env={**RESUMABLE, "CARRIER_INSTAGRAM_FTP_CLEANUP": "after_publish"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Could not delete" not in result.stderr
    assert instagram_env.published_files() == []  # the cover is gone too
