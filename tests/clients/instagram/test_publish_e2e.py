"""`carrier instagram post` with publishing options and videos that need converting, end to
end: FTPS, HTTP and the fake Graph API, which downloads the video and the cover and checks
the options as Meta does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrier_cli.clients.instagram import video_probe
from tests.clients.instagram.cli_helpers import carrier, run_cli
from tests.clients.instagram.helpers import make_image
from tests.clients.instagram.videos import make_video
from tests.support.instagram_servers import InstagramEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]


def container_of(env: InstagramEnv, index: int = 0) -> dict[str, str]:
    graph = env.graph
    return graph.containers[graph.published[index]["container"]].params


def test_mov_reel_with_cover_is_transcoded_and_published(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    """The acceptance run: `carrier instagram post clip.mov --kind reel --cover cover.jpg`."""
    clip = make_video(tmp_path / "clip.mov", codec="mpeg4", fps=15, sample_rate=96_000)
    before = clip.read_bytes()
    make_image(tmp_path / "cover.png", (1080, 1920), fmt="PNG")
    result = run_cli(
        "instagram",
        "post",
        "clip.mov",
        "--kind",
        "reel",
        "--cover",
        "cover.png",
        "--caption",
        "tide",
        "--collaborator",
        "marina.sails",
        "--collaborator",
        "@harbour_cat",
        "--no-share-to-feed",
        "--audio-name",
        "Harbour bells",
        "--location-id",
        "110843418940484",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    params = container_of(instagram_env)
    assert params["media_type"] == "REELS" and params["share_to_feed"] == "false"
    assert json.loads(params["collaborators"]) == ["marina.sails", "harbour_cat"]
    assert params["audio_name"] == "Harbour bells" and params["location_id"] == "110843418940484"
    # Both files were fetched by "Instagram" over HTTP: the video as MP4, the cover as JPEG.
    fetched = {url: ctype for url, status, ctype in instagram_env.graph.downloads if status == 200}
    assert fetched[params["video_url"]] == "video/mp4"
    assert fetched[params["cover_url"]] == "image/jpeg"
    uploaded = instagram_env.ftp.root / Path(params["video_url"]).name
    facts = video_probe.probe(uploaded)
    assert facts.video_codec == "h264" and facts.audio_codec == "aac"
    assert facts.fps == 30 and facts.sample_rate == 48_000 and facts.moov_first
    assert clip.read_bytes() == before
    status = json.loads(run_cli("instagram", "history", "--json", cwd=tmp_path).stdout)[0]
    assert status["options"]["publish"]["collaborators"] == ["marina.sails", "harbour_cat"]
    assert [i.get("role", "media") for i in status["items"]] == ["media", "cover"]


def test_image_with_tags_location_and_collaborators(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_image(tmp_path / "p.jpg", (1080, 1080))
    result = run_cli(
        "instagram",
        "post",
        "p.jpg",
        "--caption",
        "crew",
        "--user-tag",
        "marina@0.25,0.75",
        "--user-tag",
        "harbour_cat",
        "--location-id",
        "42",
        "--collaborator",
        "skipper",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    params = container_of(instagram_env)
    assert json.loads(params["user_tags"]) == [
        {"username": "marina", "x": 0.25, "y": 0.75},
        {"username": "harbour_cat", "x": 0.5, "y": 0.5},
    ]
    assert params["location_id"] == "42" and json.loads(params["collaborators"]) == ["skipper"]
    assert "share_to_feed" not in params


def test_story_takes_tags_but_no_collaborators(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "s.jpg", (1080, 1920))
    refused = run_cli("instagram", "post", "s.jpg", "--story", "--collaborator", "a", cwd=tmp_path)
    assert refused.returncode == 2 and "stories cannot have collaborators" in refused.stderr
    assert instagram_env.graph.requests == []
    result = run_cli(
        "instagram", "post", "s.jpg", "--kind", "story", "--user-tag", "a", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    params = container_of(instagram_env)
    assert (
        params["media_type"] == "STORIES" and json.loads(params["user_tags"])[0]["username"] == "a"
    )


def test_options_survive_a_crash_and_the_resume_sends_them(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    """Killed after the upload: `resume` creates the container with the journaled options
    and the journaled cover, without being told them again."""
    make_video(tmp_path / "r.mp4", fps=120, seconds=3.2)
    make_image(tmp_path / "c.jpg", (1080, 1920))
    args = ["instagram", "post", "r.mp4", "--caption", "again", "--cover", "c.jpg"]
    args += ["--collaborator", "a", "--collaborator", "b", "--audio-name", "tune"]
    crashed = carrier(*args, cwd=tmp_path, extra_env={"CARRIER_TEST_CRASH_AFTER": "uploaded"})
    assert crashed.returncode == 137, crashed.stderr
    assert instagram_env.graph.containers == {}
    post_id = json.loads(run_cli("instagram", "history", "--json", cwd=tmp_path).stdout)[0]["id"]
    resumed = run_cli("instagram", "resume", str(post_id), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    params = container_of(instagram_env)
    assert json.loads(params["collaborators"]) == ["a", "b"] and params["audio_name"] == "tune"
    assert params["cover_url"].endswith(".jpg")
    # The same command again: already published, not a second post.
    again = carrier(*args, cwd=tmp_path)
    assert again.returncode == 0 and "Already published" in again.stdout
    assert len(instagram_env.graph.published) == 1


def test_dry_run_shows_the_conversion_and_the_cover(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_video(tmp_path / "v.mkv")
    make_image(tmp_path / "c.jpg", (1080, 1920))
    result = run_cli(
        "instagram",
        "post",
        "v.mkv",
        "--cover",
        "c.jpg",
        "--caption",
        "x",
        "--dry-run",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["media"]
    assert rows[0]["notes"] == ["remuxed: container matroska (needs MP4)"]
    assert rows[0]["upload"].endswith(".mp4") and rows[1]["source"].endswith("c.jpg")
    assert instagram_env.graph.requests == []


def test_no_transcode_refuses_before_any_network_call(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_video(tmp_path / "v.mp4", fps=120, seconds=3.2)
    result = run_cli("instagram", "post", "v.mp4", "--caption", "x", "--no-transcode", cwd=tmp_path)
    assert result.returncode == 2
    assert "frame rate 120 fps (needs 23 to 60)" in result.stderr.replace("\n  ", " ")
    assert instagram_env.graph.requests == [] and instagram_env.published_files() == []


def test_resume_converts_again_when_the_cache_was_cleared(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    """Killed right after journaling; the converted copy is gone (cache cleaned): the
    resume converts the original again and publishes the new copy."""
    from carrier_cli.clients.instagram.pipeline import prepared_dir

    make_video(tmp_path / "v.mkv", codec="mpeg4")
    args = ["instagram", "post", "v.mkv", "--caption", "cached"]
    crashed = carrier(*args, cwd=tmp_path, extra_env={"CARRIER_TEST_CRASH_AFTER": "prepared"})
    assert crashed.returncode == 137, crashed.stderr
    converted = list(prepared_dir().glob("*.mp4"))
    assert len(converted) == 1
    converted[0].unlink()
    resumed = run_cli("instagram", "resume", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    params = container_of(instagram_env)
    uploaded = instagram_env.ftp.root / Path(params["video_url"]).name
    assert video_probe.probe(uploaded).video_codec == "h264"
