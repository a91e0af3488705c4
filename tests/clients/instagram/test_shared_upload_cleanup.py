"""Two posts of the same file share one uploaded file on the FTP server (its name comes
from the content's hash): the cleanup after one is published must not delete the file
while the other still needs it, and the last one out deletes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.clients.instagram.cli_helpers import carrier
from tests.clients.instagram.helpers import make_image
from tests.support.instagram_servers import InstagramEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]

CLEANUP = {"CARRIER_INSTAGRAM_FTP_CLEANUP": "after_publish"}


def status(tmp_path: Path, post_id: int) -> dict[str, Any]:
    result = carrier("instagram", "status", str(post_id), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row: dict[str, Any] = json.loads(result.stdout)[0]
    return row


def test_a_shared_file_stays_until_the_last_post_that_needs_it_is_published(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    make_image(tmp_path / "p.jpg", (800, 800))
    # Post 1 uploads the file, then its process dies before the container is created.
    crashed = carrier(
        "instagram",
        "post",
        "p.jpg",
        "--caption",
        "first",
        cwd=tmp_path,
        extra_env={**CLEANUP, "CARRIER_TEST_CRASH_AFTER": "uploaded"},
    )
    assert crashed.returncode == 137, crashed.stderr
    [shared] = instagram_env.published_files()

    # Post 2 of the same file is published; its cleanup must leave post 1's file.
    second = carrier(
        "instagram", "post", "p.jpg", "--caption", "second", cwd=tmp_path, extra_env=CLEANUP
    )
    assert second.returncode == 0, second.stderr
    assert instagram_env.published_files() == [shared]
    kept = status(tmp_path, 2)["options"]["ftp_cleanup"]
    assert kept["deleted"] == [] and kept["failed"] == {}
    assert kept["kept"] == {shared.name: "post 1 has not been published yet"}
    assert "post 1" in second.stdout + second.stderr

    # Post 1 resumes from its upload: Instagram can still fetch the file, and then it goes.
    resumed = carrier("instagram", "resume", "1", cwd=tmp_path, extra_env=CLEANUP)
    assert resumed.returncode == 0, resumed.stderr
    graph = instagram_env.graph
    assert [p["caption"] for p in graph.published] == ["second", "first"]
    assert all(code == 200 for _, code, _ in graph.downloads)
    assert instagram_env.published_files() == []
    assert status(tmp_path, 1)["options"]["ftp_cleanup"]["deleted"] == [shared.name]
