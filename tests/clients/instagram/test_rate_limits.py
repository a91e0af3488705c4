"""Graph API rate limits: usage headers slow the client down before Meta's limit, and the
throttling codes back off, bounded, against the fake Graph API's real headers and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from carrier_cli.clients.instagram import comments, rate_limits
from carrier_cli.clients.instagram.graph import GraphClient, GraphError
from carrier_cli.clients.instagram.options import GraphOptions
from carrier_cli.clients.instagram.rate_limits import RateGovernor, Usage, parse_usage
from tests.support.instagram_servers import FakeGraph


@pytest.fixture(autouse=True)
def _fresh_governors() -> Iterator[None]:
    rate_limits.forget_governors()
    yield
    rate_limits.forget_governors()


def options(fake: FakeGraph, *, retries: int = 3, delay: float = 0.02) -> GraphOptions:
    return GraphOptions(
        account_id=fake.account_id,
        access_token=fake.token,
        api_host="graph.facebook.com",
        api_version="v25.0",
        api_base=fake.url,
        max_retries=retries,
        retry_delay=delay,
        poll_interval=0.02,
        poll_timeout=5,
    )


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_parse_usage_takes_the_highest_figure_of_both_headers() -> None:
    headers = {
        "X-App-Usage": json.dumps({"call_count": 12, "total_time": 30, "total_cputime": 5}),
        "x-business-use-case-usage": json.dumps(
            {
                "1784": [
                    {
                        "type": "instagram",
                        "call_count": 85,
                        "total_cputime": 3,
                        "total_time": 4,
                        "estimated_time_to_regain_access": 0,
                    },
                    {"type": "pages", "call_count": 1, "estimated_time_to_regain_access": 2},
                ]
            }
        ),
    }
    assert parse_usage(headers) == Usage(85.0, 120.0)
    assert parse_usage({"X-App-Usage": "not json"}) is None
    assert parse_usage({"Content-Type": "application/json"}) is None


async def test_the_governor_waits_nothing_below_80_then_more_and_more() -> None:
    recorder = Recorder()
    clock = [1000.0]
    governor = RateGovernor(sleep=recorder, clock=lambda: clock[0])
    delays = []
    for percent in (10, 79, 80, 90, 100):
        governor.observe({"X-App-Usage": json.dumps({"call_count": percent})})
        delays.append(round(governor.delay(), 2))
    assert delays == [0.0, 0.0, 1.0, 30.5, 60.0]
    governor.observe(
        {
            "X-Business-Use-Case-Usage": json.dumps(
                {"1": [{"call_count": 100, "estimated_time_to_regain_access": 600}]}
            )
        }
    )
    assert governor.delay() == rate_limits.MAX_BLOCK  # 10 hours announced; 15 min at most
    clock[0] += rate_limits.MAX_BLOCK + 1
    governor.observe({"X-App-Usage": json.dumps({"call_count": 5})})
    assert governor.delay() == 0.0


async def test_usage_headers_from_the_graph_api_slow_the_next_calls(fake_graph: FakeGraph) -> None:
    recorder = Recorder()
    opts = options(fake_graph)
    async with GraphClient(opts) as graph:
        rate_limits.install_governor(graph.base, graph.account_id, RateGovernor(sleep=recorder))
        graph.governor = rate_limits.governor_for(graph.base, graph.account_id)
        post = fake_graph.comments.add_post("p")
        await comments.recent_media(graph, 10)
        assert recorder.sleeps == []  # no header yet
        fake_graph.comments.set_usage(business=95)
        await comments.recent_media(graph, 10)  # this answer carries 95 %
        assert recorder.sleeps == []
        await comments.media_comments(graph, post)
        [wait] = recorder.sleeps
        assert wait == pytest.approx(1 + 0.75 * 59)
        # Every client of the account shares what the headers said.
        async with GraphClient(opts) as other:
            assert other.governor is graph.governor
        fake_graph.comments.set_usage(app=20, business=30)
        await comments.recent_media(graph, 10)
        await comments.recent_media(graph, 10)
        assert len(recorder.sleeps) == 2  # the 95 % before the first; nothing after


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80002])
async def test_throttling_codes_back_off_and_retry(fake_graph: FakeGraph, code: int) -> None:
    post = fake_graph.comments.add_post("p")
    fake_graph.comments.add_comment(post, "hello")
    fake_graph.comments.throttle_next("comments", code)
    async with GraphClient(options(fake_graph, delay=0.02)) as graph:
        start = time.monotonic()
        found = await comments.media_comments(graph, post)
        elapsed = time.monotonic() - start
    assert [c.text for c in found] == ["hello"]
    assert [p for _m, p in fake_graph.requests].count(f"/v25.0/{post}/comments") == 2
    assert elapsed >= 0.1  # 5 x the first retry delay


async def test_throttling_is_bounded_and_explained(fake_graph: FakeGraph) -> None:
    post = fake_graph.comments.add_post("p")
    fake_graph.comments.throttle_next("comments", 4, times=10)
    async with GraphClient(options(fake_graph, retries=2, delay=0.01)) as graph:
        with pytest.raises(GraphError) as caught:
            await comments.media_comments(graph, post)
    assert caught.value.code == 4
    assert "Application request limit reached" in caught.value.message
    assert [p for _m, p in fake_graph.requests].count(f"/v25.0/{post}/comments") == 3
