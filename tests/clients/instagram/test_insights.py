"""`carrier instagram insights`: per-post metrics from the fake Graph API's media insights,
as a table, a per-day chart and JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from carrier_cli.clients.instagram.insights import sparkline
from tests.clients.instagram.cli_helpers import run_cli
from tests.clients.instagram.helpers import make_image
from tests.support.instagram_servers import InstagramEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]

DAY = 86400


def publish(env: InstagramEnv, tmp_path: Path, name: str, caption: str, *extra: str) -> None:
    make_image(tmp_path / name, (1080, 1080), color=(len(caption) * 7 % 255, 90, 20))
    result = run_cli("instagram", "post", name, "--caption", caption, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def three_posts(instagram_env: InstagramEnv, tmp_path: Path) -> InstagramEnv:
    """Two posts three days ago and yesterday through Carrier, a story today."""
    publish(instagram_env, tmp_path, "a.jpg", "harbour at dawn")
    publish(instagram_env, tmp_path, "b.jpg", "nets drying #boats")
    make_image(tmp_path / "s.jpg", (1080, 1920))
    assert run_cli("instagram", "post", "s.jpg", "--story", cwd=tmp_path).returncode == 0
    graph = instagram_env.graph
    now = time.time()
    graph.published[0]["at"] = now - 3 * DAY
    graph.published[1]["at"] = now - DAY
    a, b, story = (m["id"] for m in graph.published)
    graph.insights[a] = {"reach": 1200, "views": 3400, "likes": 210, "comments": 12}
    graph.insights[a] |= {"saved": 30, "shares": 8}
    graph.insights[b] = {"reach": 300, "views": 500, "likes": 40, "comments": 2}
    graph.insights[b] |= {"saved": 1, "shares": 0}
    graph.insights[story] = {"reach": 90, "views": 95, "shares": 1}
    return instagram_env


def test_json_report_per_post_and_per_day(three_posts: InstagramEnv, tmp_path: Path) -> None:
    result = run_cli("instagram", "insights", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    posts = data["posts"]
    assert [p["caption"] for p in posts] == ["", "nets drying #boats", "harbour at dawn"]
    story, b, a = posts
    assert a["metrics"] == {
        "reach": 1200,
        "views": 3400,
        "likes": 210,
        "comments": 12,
        "saved": 30,
        "shares": 8,
    }
    assert a["post_id"] == 1 and b["post_id"] == 2 and story["post_id"] == 3
    # A story is asked only the metrics Meta has for stories (likes would be an error).
    assert story["media_type"] == "STORY" and story["metrics"]["likes"] is None
    assert story["metrics"]["reach"] == 90 and story["error"] is None
    assert data["totals"]["views"] == 3400 + 500 + 95
    days = data["days"]
    assert len(days) == 4 and [d["posts"] for d in days] == [1, 0, 1, 1]
    assert days[0]["views"] == 3400 and days[1]["views"] == 0


def test_table_and_chart(three_posts: InstagramEnv, tmp_path: Path) -> None:
    result = run_cli("instagram", "insights", cwd=tmp_path, extra_env={"COLUMNS": "150"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("reach", "views", "saves", "harbour at dawn", "3,400", "1,200", "total"):
        assert text in out, out
    assert "per day" in out and "█" in out


def test_one_post_by_journal_id_or_media_id(three_posts: InstagramEnv, tmp_path: Path) -> None:
    by_journal = json.loads(run_cli("instagram", "insights", "2", "--json", cwd=tmp_path).stdout)
    assert [p["caption"] for p in by_journal["posts"]] == ["nets drying #boats"]
    media_id = three_posts.graph.published[0]["id"]
    by_media = json.loads(run_cli("instagram", "insights", media_id, "--json", cwd=tmp_path).stdout)
    assert by_media["posts"][0]["metrics"]["views"] == 3400


def test_since_limits_the_posts(three_posts: InstagramEnv, tmp_path: Path) -> None:
    data = json.loads(
        run_cli("instagram", "insights", "--since", "2d", "--json", cwd=tmp_path).stdout
    )
    assert [p["post_id"] for p in data["posts"]] == [3, 2]


def test_a_post_without_insights_is_listed_with_the_reason(
    three_posts: InstagramEnv, tmp_path: Path
) -> None:
    three_posts.graph.fail_next(
        "insights",
        10,
        2108006,
        message="Media posted before business account conversion",
    )
    data = json.loads(run_cli("instagram", "insights", "1", "--json", cwd=tmp_path).stdout)
    assert "before business account conversion" in data["posts"][0]["error"]


def test_bad_input_exits_2(instagram_env: InstagramEnv, tmp_path: Path) -> None:
    bad_since = run_cli("instagram", "insights", "--since", "soon", cwd=tmp_path)
    assert bad_since.returncode == 2 and "--since 'soon'" in bad_since.stderr
    unknown = run_cli("instagram", "insights", "7", cwd=tmp_path)
    assert unknown.returncode == 2 and "No Instagram post with id 7" in unknown.stderr
    empty = run_cli("instagram", "insights", cwd=tmp_path)
    assert empty.returncode == 0 and "No posts on the account" in empty.stderr


def test_sparkline() -> None:
    assert sparkline([0, 1, 4, 8]) == " ▁▄█"
    assert sparkline([0, 0]) == "  "
