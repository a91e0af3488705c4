"""The Graph client against the fake Graph API: endpoints, polling, error mapping, retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.clients.instagram.graph import GraphClient, GraphError, classify
from carrier_cli.clients.instagram.options import GraphOptions
from carrier_cli.config import load_settings
from carrier_cli.errors import ConfigError
from tests.support.instagram_servers import FakeGraph, HttpServerHandle


def options_for(graph: FakeGraph, **overrides: object) -> GraphOptions:
    values: dict[str, object] = {
        "instagram_account_id": graph.account_id,
        "instagram_access_token": graph.token,
        "graph_api_base": graph.url,
        "instagram_poll_interval": 0.01,
        "instagram_retry_delay": 0.01,
        "instagram_poll_timeout": 2.0,
    }
    values.update(overrides)
    return GraphOptions.from_settings(
        load_settings(overrides=values, use_stored_keys=False).settings
    )


async def test_whoami_and_limit(fake_graph: FakeGraph) -> None:
    fake_graph.quota_usage, fake_graph.quota_total = 3, 25
    async with GraphClient(options_for(fake_graph)) as graph:
        me = await graph.whoami()
        quota = await graph.publishing_limit()
    assert me["username"] == "carrier_test"
    assert (quota.usage, quota.total, quota.remaining, quota.duration) == (3, 25, 22, 86400)
    # The token travels in a header, never in the URL.
    assert all("access_token" not in path for _, path in fake_graph.requests)
    assert fake_graph.requests[0][1].startswith("/v25.0/")


async def test_version_is_configurable(fake_graph: FakeGraph) -> None:
    async with GraphClient(options_for(fake_graph, graph_api_version="v23.0")) as graph:
        await graph.whoami()
    assert fake_graph.requests[-1][1] == f"/v23.0/{fake_graph.account_id}"


async def test_expired_token_explains_renewal(fake_graph: FakeGraph) -> None:
    async with GraphClient(options_for(fake_graph, instagram_access_token="EAAbad")) as graph:
        with pytest.raises(GraphError) as info:
            await graph.whoami()
    assert info.value.action == "token" and info.value.code == 190
    assert "carrier keys set instagram" in str(info.value)
    assert len(fake_graph.requests) == 1  # not retried


def test_missing_settings_are_named(fake_graph: FakeGraph) -> None:
    with pytest.raises(ConfigError, match="INSTAGRAM_ACCESS_TOKEN"):
        GraphClient(options_for(fake_graph, instagram_access_token=None))
    with pytest.raises(ConfigError, match="INSTAGRAM_ACCOUNT_ID"):
        GraphClient(options_for(fake_graph, instagram_account_id=None))


async def test_transient_errors_are_retried(fake_graph: FakeGraph) -> None:
    fake_graph.fail_next(
        "limit", -1, 2207001, message="An unexpected error has occurred", transient=True
    )
    fake_graph.fail_next("limit", 2, None, http_status=500, message="Service temporarily down")
    async with GraphClient(options_for(fake_graph)) as graph:
        quota = await graph.publishing_limit()
    assert quota.total == 50
    assert len(fake_graph.requests) == 3


async def test_retries_are_bounded(fake_graph: FakeGraph) -> None:
    fake_graph.fail_next("limit", -2, 2207003, message="timeout", times=10)
    async with GraphClient(options_for(fake_graph, max_retries=2)) as graph:
        with pytest.raises(GraphError, match="2207003"):
            await graph.publishing_limit()
    assert len(fake_graph.requests) == 3


async def test_container_lifecycle(
    fake_graph: FakeGraph, media_http_server: HttpServerHandle, tmp_path: Path
) -> None:
    from tests.clients.instagram.helpers import make_image

    make_image(media_http_server.root / "p.jpg", (1080, 1080))
    fake_graph.script_statuses(["IN_PROGRESS", "IN_PROGRESS", "FINISHED"])
    async with GraphClient(options_for(fake_graph)) as graph:
        cid = await graph.create_container(
            {"image_url": media_http_server.url + "p.jpg", "caption": "hi"}, what="t"
        )
        status = await graph.wait_finished(cid)
        media_id = await graph.publish(cid)
        link = await graph.permalink(media_id)
    assert status.status_code == "FINISHED"
    assert fake_graph.containers[cid].polls == 3
    assert fake_graph.published[0]["caption"] == "hi"
    assert link and link.startswith("https://www.instagram.com/p/")


async def test_publish_waits_while_not_ready(
    fake_graph: FakeGraph, media_http_server: HttpServerHandle
) -> None:
    from tests.clients.instagram.helpers import make_image

    make_image(media_http_server.root / "p.jpg", (1080, 1080))
    async with GraphClient(options_for(fake_graph)) as graph:
        cid = await graph.create_container({"image_url": media_http_server.url + "p.jpg"}, what="t")
        await graph.wait_finished(cid)
        fake_graph.fail_next("media_publish", 9007, 2207027, message="Media ID is not available")
        await graph.publish(cid)
    assert len(fake_graph.published) == 1
    assert sum(1 for _, p in fake_graph.requests if p.endswith("media_publish")) == 2


async def test_publish_whose_answer_was_lost_is_published_once(
    fake_graph: FakeGraph, media_http_server: HttpServerHandle
) -> None:
    """Instagram publishes, the answer is lost (500), the retry gets 9007/2207026: success.

    Before, 2207026 counted as "not ready", so the client kept calling media_publish until
    instagram_poll_timeout and then failed a post that was out.
    """
    from tests.clients.instagram.helpers import make_image

    make_image(media_http_server.root / "p.jpg", (1080, 1080))
    # A timeout this short made the old code fail instead of waiting ten minutes.
    async with GraphClient(options_for(fake_graph, instagram_poll_timeout=0.5)) as graph:
        cid = await graph.create_container(
            {"image_url": media_http_server.url + "p.jpg", "caption": "once"}, what="t"
        )
        await graph.wait_finished(cid)
        fake_graph.lose_next_answer("media_publish")
        assert await graph.publish(cid) is None  # published; the id was in the lost answer
        media_id = await graph.published_media_id("once")
    [media] = fake_graph.published
    assert media_id == media["id"]  # read back from the account's recent media
    assert sum(1 for _, p in fake_graph.requests if p.endswith("media_publish")) == 2


async def test_fake_refuses_bad_media_with_graph_codes(
    fake_graph: FakeGraph, media_http_server: HttpServerHandle
) -> None:
    from tests.clients.instagram.helpers import make_image

    make_image(media_http_server.root / "a.png", (1080, 1080), fmt="PNG")
    async with GraphClient(options_for(fake_graph)) as graph:
        with pytest.raises(GraphError) as info:
            await graph.create_container(
                {"image_url": media_http_server.url + "a.png"}, what="Creating"
            )
        assert info.value.subcode == 2207005 and info.value.action == "fix_input"
        assert info.value.exit_code == 2 and "must be JPEG" in info.value.message
        with pytest.raises(GraphError) as info:
            await graph.create_container(
                {"image_url": media_http_server.url + "gone.jpg"}, what="Creating"
            )
        assert info.value.subcode == 2207052 and "HTTP_SERVER" in str(info.value)


async def test_wait_reports_error_and_timeout(
    fake_graph: FakeGraph, media_http_server: HttpServerHandle
) -> None:
    from carrier_cli.errors import RuntimeFailure
    from tests.clients.instagram.helpers import make_image

    make_image(media_http_server.root / "p.jpg", (1080, 1080))
    fake_graph.script_statuses(["IN_PROGRESS", "ERROR"], ["IN_PROGRESS"])
    url = media_http_server.url + "p.jpg"
    # The ERROR case polls with the usual 2 s budget: under 0.2 s, one slow poll on a loaded
    # machine used the whole budget before the second poll could see ERROR.
    async with GraphClient(options_for(fake_graph)) as graph:
        first = await graph.create_container({"image_url": url}, what="t")
        assert (await graph.wait_finished(first)).status_code == "ERROR"
    # The second container stays IN_PROGRESS forever: a short budget runs out.
    async with GraphClient(options_for(fake_graph, instagram_poll_timeout=0.2)) as graph:
        second = await graph.create_container({"image_url": url}, what="t")
        with pytest.raises(RuntimeFailure, match="still processing"):
            await graph.wait_finished(second)


@pytest.mark.parametrize(
    ("code", "subcode", "action"),
    [
        (190, 460, "token"),
        (9007, 2207027, "not_ready"),
        (9007, 2207026, "published"),
        (36001, 2207005, "fix_input"),
        (-2, 2207023, "fix_input"),
        (-2, 2207003, "retry"),
        (-1, 2207001, "retry"),
        (24, 2207006, "recreate"),
        (9, 2207042, "quota"),
        (4, 2207051, "stop"),
        (25, 2207050, "stop"),
        (36003, 2207009, "fix_input"),
        (613, None, "retry"),
        (100, 2207028, "fix_input"),
        (100, None, "fail"),
    ],
)
def test_classification(code: int, subcode: int | None, action: str) -> None:
    assert classify(code, subcode, False, 400) == action


async def test_throttling_backs_off_longer(fake_graph: FakeGraph) -> None:
    import time

    fake_graph.fail_next("user", 4, None, message="Application request limit reached")
    start = time.monotonic()
    async with GraphClient(options_for(fake_graph, instagram_retry_delay=0.05)) as graph:
        await graph.whoami()
    assert time.monotonic() - start >= 0.25  # 5 x the normal first delay
    assert len(fake_graph.requests) == 2
