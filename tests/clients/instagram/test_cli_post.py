"""`carrier instagram ...` end to end: real subprocesses, FTPS, HTTP and the fake Graph API."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.clients.instagram.cli_helpers import carrier, noisy_jpeg, popen, run_cli
from tests.clients.instagram.helpers import make_image
from tests.clients.instagram.videos import make_video
from tests.support.instagram_servers import FtpServerHandle, InstagramEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]


def post(
    tmp_path: Path, *files_and_options: str, caption: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`carrier instagram post FILES... --caption CAPTION [OPTIONS]`, in this process."""
    args = ["instagram", "post", *files_and_options, "--caption", caption]
    return run_cli(*args, cwd=tmp_path, extra_env=env)


def unwrapped(result: subprocess.CompletedProcess[str]) -> str:
    """stderr with the error printer's line wrapping undone (it indents by two spaces)."""
    return result.stderr.replace("\n  ", " ")


def journal(tmp_path: Path) -> list[dict[str, object]]:
    result = run_cli("instagram", "history", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_png_is_converted_published_once_and_rerun_says_so(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    photo = make_image(
        tmp_path / "photo.png", (900, 700), fmt="PNG", mode="RGBA", color=(0, 128, 255, 200)
    )
    before = photo.read_bytes()
    result = carrier("instagram", "post", "photo.png", "--caption", "hello", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    graph = instagram_env.graph
    assert len(graph.published) == 1
    media = graph.published[0]
    assert media["caption"] == "hello" and media["media_type"] == "IMAGE"
    assert media["id"] in result.stdout and media["permalink"] in result.stdout
    # Instagram fetched a JPEG over HTTP; the FTP root holds only the final file.
    url, status, ctype = graph.downloads[0]
    assert status == 200 and ctype == "image/jpeg" and url.endswith(".jpg")
    files = instagram_env.published_files()
    assert len(files) == 1 and files[0].read_bytes()[:2] == b"\xff\xd8"
    assert not [p for p in instagram_env.ftp.root.iterdir() if p.name.endswith(".part")]
    assert photo.read_bytes() == before
    assert instagram_env.env["INSTAGRAM_ACCESS_TOKEN"] not in result.stdout + result.stderr

    again = carrier("instagram", "post", "photo.png", "--caption", "hello", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Already published as post 1" in again.stdout and media["id"] in again.stdout
    assert len(graph.published) == 1

    rows = journal(tmp_path)
    assert [(r["status"], r["media_id"]) for r in rows] == [("published", media["id"])]

    forced = post(tmp_path, "photo.png", "--force", caption="hello")
    assert forced.returncode == 0, forced.stderr
    assert len(graph.published) == 2 and "Published post 2" in forced.stdout


def test_carousel(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    files = [
        make_image(tmp_path / f"{i}.jpg", (1080, 1080), color=(i * 40, 0, 0)) for i in range(3)
    ]
    result = post(tmp_path, *[f.name for f in files], "--alt-text", "red squares", caption="three")
    assert result.returncode == 0, result.stderr
    graph = instagram_env.graph
    assert len(graph.published) == 1 and graph.published[0]["media_type"] == "CAROUSEL"
    parent = graph.containers[graph.published[0]["container"]]
    children = parent.params["children"].split(",")
    assert len(children) == 3
    for child in children:
        params = graph.containers[child].params
        assert params["is_carousel_item"] == "true" and "caption" not in params
        assert params["alt_text"] == "red squares"
    assert parent.params["caption"] == "three"


def test_reel(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", seconds=4)
    result = post(tmp_path, "clip.mp4", caption="reel")
    assert result.returncode == 0, result.stderr
    graph = instagram_env.graph
    container = graph.containers[graph.published[0]["container"]]
    assert container.params["media_type"] == "REELS" and "video_url" in container.params
    assert graph.downloads[0][2] == "video/mp4"


def test_story(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "s.jpg", (1080, 1920))
    result = run_cli("instagram", "post", "s.jpg", "--story", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    graph = instagram_env.graph
    assert graph.containers[graph.published[0]["container"]].params["media_type"] == "STORIES"


@pytest.mark.parametrize(
    ("make", "args", "expected"),
    [
        (lambda d: make_image(d / "tall.jpg", (400, 1000)), ["tall.jpg"], "aspect ratio 0.40"),
        (
            lambda d: make_video(d / "v.mp4", faststart=False),
            ["v.mp4", "--no-transcode"],
            "'moov' atom",
        ),
        (lambda d: make_video(d / "v.mp4", fps=15), ["v.mp4", "--no-transcode"], "15 fps"),
        (
            lambda d: make_image(d / "c.jpg", (800, 800)),
            ["c.jpg", *[f"--collaborator=u{i}" for i in range(4)]],
            "--collaborator given 4 times",
        ),
        (
            lambda d: make_video(d / "r.mp4"),
            ["r.mp4", "--user-tag", "marina@0.5,0.5"],
            "--user-tag applies to single images and stories",
        ),
        (
            lambda d: make_image(d / "c.jpg", (800, 800)),
            ["c.jpg", "--cover", "c.jpg"],
            "--cover applies to Reels only",
        ),
        (
            lambda d: make_video(d / "r.mp4", seconds=3.5),
            ["r.mp4", "--thumb-offset", "4000"],
            "--thumb-offset 4000: the video lasts",
        ),
        (lambda d: make_image(d / "c.jpg"), ["c.jpg", "--kind", "reel"], "--kind reel does not"),
        (lambda d: (d / "n.jpg").write_text("x"), ["n.jpg"], "not an image"),
        (
            lambda d: make_image(d / "c.jpg", (800, 800)),
            ["c.jpg", "--caption", "x" * 2201],
            "2201 characters",
        ),
        (
            lambda d: make_image(d / "h.jpg", (800, 800)),
            ["h.jpg", "--caption", " ".join(f"#t{i}" for i in range(31))],
            "31 hashtags",
        ),
        (
            lambda d: make_image(d / "f.jpg", (800, 800)),
            ["f.jpg", "--fit", "stretch"],
            "--fit `stretch`",
        ),
    ],
)
def test_refusals_exit_2_before_any_network_call(
    instagram_env: InstagramEnv, tmp_path: Path, make: object, args: list[str], expected: str
) -> None:
    make(tmp_path)  # type: ignore[operator]
    if "--caption" not in args:
        args = [*args, "--caption", "hi"]
    result = run_cli("instagram", "post", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in unwrapped(result)
    assert "Traceback" not in result.stderr
    assert instagram_env.graph.requests == []
    assert instagram_env.published_files() == []


def test_dry_run_prepares_without_network(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "wide.png", (3000, 1000), fmt="PNG")
    result = post(tmp_path, "wide.png", "--fit", "crop", "--dry-run", "--json", caption="x")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    item = data["media"][0]
    assert data["dry_run"] and item["width"] == 1440 and item["width"] / item["height"] >= 0.8
    assert Path(item["upload"]).is_file()
    assert instagram_env.graph.requests == [] and instagram_env.published_files() == []


def test_upload_interrupted_then_resumed(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    photo = noisy_jpeg(tmp_path / "big.jpg")
    assert photo.stat().st_size > 600_000
    instagram_env.ftp.drop_next_upload_after(300_000)
    result = post(tmp_path, "big.jpg", caption="big")
    assert result.returncode == 0, result.stderr
    assert instagram_env.ftp.control["drops"] == 1
    assert "resumed at byte" in result.stderr
    served = instagram_env.published_files()[0]
    assert served.read_bytes() == photo.read_bytes()
    assert len(instagram_env.graph.published) == 1


def test_unreachable_http_server_is_explained(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(tmp_path, "p.jpg", caption="x", env={"HTTP_SERVER": "http://127.0.0.1:9/media/"})
    assert result.returncode == 1
    err = unwrapped(result)
    assert "not publicly reachable at http://127.0.0.1:9/media/carrier-" in err
    assert "HTTP_SERVER" in err
    assert not instagram_env.graph.containers
    rows = journal(tmp_path)
    assert rows[0]["status"] == "failed" and rows[0]["last_step"] == "prepared"


def test_transient_graph_error_is_retried(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    graph = instagram_env.graph
    graph.fail_next("media", -2, 2207003, message="Media download timed out", transient=True)
    graph.fail_next("media_publish", -1, None, http_status=500, message="Unexpected error")
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(tmp_path, "p.jpg", caption="x")
    assert result.returncode == 0, result.stderr
    assert len(graph.published) == 1 and len(graph.containers) == 1
    assert sum(1 for _, p in graph.requests if p.endswith("/media")) == 2


def test_lost_publish_answer_ends_published_exactly_once(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    """media_publish succeeds but its answer is lost: the retry's 9007/2207026 means done."""
    graph = instagram_env.graph
    graph.lose_next_answer("media_publish")
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(
        tmp_path, "p.jpg", caption="lost answer", env={"CARRIER_INSTAGRAM_POLL_TIMEOUT": "1"}
    )
    assert result.returncode == 0, result.stderr
    [media] = graph.published
    assert media["id"] in result.stdout
    rows = journal(tmp_path)
    assert [(r["status"], r["media_id"]) for r in rows] == [("published", media["id"])]
    again = post(tmp_path, "p.jpg", caption="lost answer")
    assert again.returncode == 0 and "Already published" in again.stdout
    assert len(graph.published) == 1


def test_media_refused_by_instagram_exits_2_with_the_rule(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    graph = instagram_env.graph
    graph.fail_next(
        "media",
        36003,
        2207009,
        message="Aspect ratio not supported",
        user_msg="The aspect ratio is not supported.",
    )
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(tmp_path, "p.jpg", caption="x")
    assert result.returncode == 2, result.stderr
    text = unwrapped(result)
    assert "between 4:5 (0.8) and 1.91:1" in text and "2207009" in text
    assert "Traceback" not in result.stderr
    assert graph.published == []


def test_quota_exhausted_refuses_with_free_time(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    graph = instagram_env.graph
    make_image(tmp_path / "a.jpg", (800, 800))
    make_image(tmp_path / "b.jpg", (800, 800), color=(1, 2, 3))
    graph.quota_total = 1
    assert post(tmp_path, "a.jpg", caption="a").returncode == 0
    result = post(tmp_path, "b.jpg", caption="b")
    assert result.returncode == 1
    err = unwrapped(result)
    assert "publishing limit reached: 1 of 1" in err
    assert "next slot frees at 20" in err and "UTC" in err
    assert len(graph.published) == 1 and len(instagram_env.published_files()) == 1
    limit = run_cli("instagram", "limit", "--json", cwd=tmp_path)
    data = json.loads(limit.stdout)
    assert data["remaining"] == 0 and data["quota_total"] == 1 and data["next_free_slot"]
    # A slot frees: resuming the failed post publishes it.
    graph.quota_total = 2
    post_id = journal(tmp_path)[0]["id"]
    resumed = run_cli("instagram", "resume", str(post_id), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len(graph.published) == 2


def test_expired_token_is_explained(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(
        tmp_path, "p.jpg", caption="x", env={"INSTAGRAM_ACCESS_TOKEN": "EAAexpiredtoken9876543210"}
    )
    assert result.returncode == 1
    err = unwrapped(result)
    assert "code 190" in err and "carrier keys set instagram" in err
    assert "EAAexpiredtoken9876543210" not in err


@pytest.mark.parametrize("final", ["ERROR", "EXPIRED"])
def test_failed_container_reported_then_recreated(
    instagram_env: InstagramEnv, tmp_path: Path, final: str
) -> None:
    graph = instagram_env.graph
    graph.script_statuses(["IN_PROGRESS", final])
    make_image(tmp_path / "p.jpg", (800, 800))
    first = post(tmp_path, "p.jpg", caption="x")
    assert first.returncode == 1
    assert final.lower()[:5] in first.stderr.lower() or "failed processing" in first.stderr
    status = run_cli("instagram", "status", "1", cwd=tmp_path)
    assert "failed" in status.stdout
    second = post(tmp_path, "p.jpg", caption="x")
    assert second.returncode == 0, second.stderr
    assert len(graph.published) == 1 and len(graph.containers) == 2


CRASH_POINTS = [
    "prepared",
    "uploaded",
    "container_created",
    "container_finished",
    "publishing",
    "media_publish",
    "published",
]


@pytest.mark.parametrize("step", CRASH_POINTS)
def test_crash_after_each_step_then_rerun_publishes_exactly_once(
    instagram_env: InstagramEnv, tmp_path: Path, step: str
) -> None:
    make_image(tmp_path / "p.png", (800, 800), fmt="PNG")
    crashed = carrier(
        "instagram",
        "post",
        "p.png",
        "--caption",
        "crash",
        cwd=tmp_path,
        extra_env={"CARRIER_TEST_CRASH_AFTER": step},
    )
    assert crashed.returncode == 137, crashed.stderr
    rerun = post(tmp_path, "p.png", caption="crash")
    assert rerun.returncode == 0, rerun.stderr
    graph = instagram_env.graph
    assert len(graph.published) == 1
    rows = journal(tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == "published"
    assert rows[0]["media_id"] == graph.published[0]["id"]  # even when the answer was lost
    if step in ("published",):
        assert "Already published" in rerun.stdout
    else:
        assert "Published post 1" in rerun.stdout
    third = post(tmp_path, "p.png", caption="crash")
    assert "Already published" in third.stdout and len(graph.published) == 1


def test_two_concurrent_posters_publish_once(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    instagram_env.graph.delay = 0.05  # every Graph call takes a while: the runs overlap
    make_image(tmp_path / "p.jpg", (800, 800))
    procs = [
        popen("instagram", "post", "p.jpg", "--caption", "same", cwd=tmp_path) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stdout = [o[0] for o in outputs]
    assert sum("Published post 1" in s for s in stdout) == 1
    assert sum("Already published as post 1" in s for s in stdout) == 1
    assert len(instagram_env.graph.published) == 1
    assert len(instagram_env.graph.containers) == 1


def test_cleanup_deletes_remote_file(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(tmp_path, "p.jpg", "--cleanup", caption="x")
    assert result.returncode == 0, result.stderr
    assert len(instagram_env.graph.published) == 1
    assert instagram_env.published_files() == []


def test_whoami_limit_status_history(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    instagram_env.graph.quota_usage = 7
    who = run_cli("instagram", "whoami", cwd=tmp_path)
    assert who.returncode == 0 and "@carrier_test" in who.stdout
    limit = run_cli("instagram", "limit", cwd=tmp_path)
    assert "7 of 50 posts used in the last 24 h; 43 left." in limit.stdout
    empty = run_cli("instagram", "history", cwd=tmp_path)
    assert "No Instagram posts" in empty.stdout
    make_image(tmp_path / "p.jpg", (800, 800))
    assert post(tmp_path, "p.jpg", caption="x").returncode == 0
    status = run_cli("instagram", "status", "1", cwd=tmp_path)
    assert "published" in status.stdout and "p.jpg" in status.stdout
    missing = run_cli("instagram", "status", "42", cwd=tmp_path)
    assert missing.returncode == 2 and "No Instagram post with id 42" in missing.stderr


def test_missing_settings_refused_before_journal(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    result = post(tmp_path, "p.jpg", caption="x", env={"FTP_SERVER": ""})
    assert result.returncode == 2 and "FTP_SERVER is not set" in result.stderr
    assert journal(tmp_path) == []


@pytest.mark.postgres
def test_post_with_the_journal_on_postgresql(
    instagram_env: InstagramEnv, tmp_path: Path, postgres_url: str
) -> None:
    make_image(tmp_path / "p.png", (800, 800), fmt="PNG")
    env = {"DATABASE_URL": postgres_url}
    crashed = carrier(
        "instagram",
        "post",
        "p.png",
        "--caption",
        "pg",
        cwd=tmp_path,
        extra_env={**env, "CARRIER_TEST_CRASH_AFTER": "publishing"},
    )
    assert crashed.returncode == 137, crashed.stderr
    first = post(tmp_path, "p.png", caption="pg", env=env)
    assert first.returncode == 0, first.stderr
    again = post(tmp_path, "p.png", caption="pg", env=env)
    assert "Already published as post 1" in again.stdout
    assert len(instagram_env.graph.published) == 1


def crash_after_prepared_and_lose_the_copy(tmp_path: Path, carrier_home: Path) -> None:
    """`post p.png` dies right after journaling 'prepared'; then the prepared copy goes."""
    import shutil

    crashed = carrier(
        "instagram",
        "post",
        "p.png",
        "--caption",
        "r",
        cwd=tmp_path,
        extra_env={"CARRIER_TEST_CRASH_AFTER": "prepared"},
    )
    assert crashed.returncode == 137
    shutil.rmtree(carrier_home / "cache" / "instagram")


def test_resume_after_crash_rebuilds_a_lost_prepared_copy(
    instagram_env: InstagramEnv, tmp_path: Path, carrier_home: Path
) -> None:
    make_image(tmp_path / "p.png", (800, 800), fmt="PNG")
    crash_after_prepared_and_lose_the_copy(tmp_path, carrier_home)
    status = run_cli("instagram", "status", cwd=tmp_path)
    assert "prepared" in status.stdout
    resumed = run_cli("instagram", "resume", "1", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Published post 1" in resumed.stdout and len(instagram_env.graph.published) == 1
    assert instagram_env.env["FTP_PASSWORD"] not in resumed.stdout + resumed.stderr


def test_resume_refuses_a_changed_original(
    instagram_env: InstagramEnv, tmp_path: Path, carrier_home: Path
) -> None:
    photo = make_image(tmp_path / "p.png", (800, 800), fmt="PNG")
    crash_after_prepared_and_lose_the_copy(tmp_path, carrier_home)
    make_image(photo, (800, 800), fmt="PNG", color=(1, 1, 1))
    resumed = run_cli("instagram", "resume", "1", cwd=tmp_path)
    assert resumed.returncode == 2 and "changed since post 1 was prepared" in unwrapped(resumed)
    assert not instagram_env.graph.published


def test_carousel_item_error_then_rerun(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    graph = instagram_env.graph
    graph.script_statuses(["FINISHED"], ["ERROR"])
    files = [make_image(tmp_path / f"{i}.jpg", (1080, 1080), color=(i, 9, 9)) for i in range(2)]
    args = ["instagram", "post", *[f.name for f in files], "--caption", "two"]
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 1
    assert "Carousel item 2 (1.jpg) was not accepted: ERROR" in unwrapped(first)
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert len(graph.published) == 1 and len(graph.containers) == 5  # 2 failed + 2 + parent


def test_plain_ftp_server_is_used_when_it_offers_no_tls(
    instagram_env: InstagramEnv, ftp_server: FtpServerHandle, tmp_path: Path
) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    env = {"FTP_SERVER": f"{ftp_server.host}:{ftp_server.port}"}  # same root, no AUTH TLS
    result = post(tmp_path, "p.jpg", caption="plain", env=env)
    assert result.returncode == 0, result.stderr
    required = post(tmp_path, "p.jpg", caption="tls", env={**env, "FTP_TLS": "true"})
    assert required.returncode == 2 and "refused AUTH TLS" in required.stderr
    assert len(instagram_env.graph.published) == 1


def test_carousel_with_a_video(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", (1080, 1080))
    make_video(tmp_path / "b.mp4", seconds=4)
    result = post(tmp_path, "a.jpg", "b.mp4", caption="mixed")
    assert result.returncode == 0, result.stderr
    graph = instagram_env.graph
    children = graph.containers[graph.published[0]["container"]].params["children"].split(",")
    kinds = [graph.containers[c].params.get("media_type", "IMAGE") for c in children]
    assert kinds == ["IMAGE", "VIDEO"]
