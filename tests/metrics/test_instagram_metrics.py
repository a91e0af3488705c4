"""Instagram posts by outcome, through the real publishing pipeline against the fake Graph
API, FTP and HTTP servers (the same set-up as the autopost tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from carrier_cli import metrics
from carrier_cli.character.loader import load_character
from carrier_cli.clients.instagram.autopost import post_next
from carrier_cli.clients.instagram.graph import GraphError
from carrier_cli.clients.instagram.journal import Journal
from carrier_cli.clients.instagram.options import InstagramOptions
from carrier_cli.config import load_settings
from carrier_cli.metrics.collectors import CarrierMetrics
from tests.clients.instagram.helpers import make_image
from tests.clients.instagram.test_autopost import StandInRuntime, write_character
from tests.metrics.scrape import families, value
from tests.support.instagram_servers import InstagramEnv

POSTS = "carrier_instagram_posts_total"


@pytest.fixture
def on() -> Iterator[CarrierMetrics]:
    made = metrics.enable()
    try:
        yield made
    finally:
        metrics.disable()


async def test_stopped_then_published(
    on: CarrierMetrics, instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    make_image(media / "harbour.jpg", (800, 800))
    graph = instagram_env.graph
    graph.script_statuses(["IN_PROGRESS"] * 30 + ["FINISHED"])
    runtime = StandInRuntime(load_character(write_character(tmp_path / "marina.yaml", media)))
    options = InstagramOptions.from_settings(load_settings().settings)
    stop = asyncio.Event()
    journal = await Journal.open(options.database_url)
    try:
        task = asyncio.create_task(post_next(runtime, options, journal, media, stop))
        while not graph.containers:
            await asyncio.sleep(0.01)
        stop.set()
        assert await asyncio.wait_for(task, 30) == "stopped"
        assert value(families(on.exposition()), POSTS, outcome="stopped") == 1
        assert await post_next(runtime, options, journal, media, asyncio.Event()) == "posted"
    finally:
        await journal.close()
    parsed = families(on.exposition())
    assert value(parsed, POSTS, outcome="published") == 1
    assert value(parsed, POSTS, outcome="stopped") == 1
    assert value(parsed, POSTS, outcome="failed") == 0


async def test_failed_post(on: CarrierMetrics, instagram_env: InstagramEnv, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    make_image(media / "harbour.jpg", (800, 800))
    # Instagram refuses to create the container: the post fails.
    instagram_env.graph.fail_next("media", 100, None, message="Invalid parameter")
    runtime = StandInRuntime(load_character(write_character(tmp_path / "marina.yaml", media)))
    options = InstagramOptions.from_settings(load_settings().settings)
    journal = await Journal.open(options.database_url)
    try:
        with pytest.raises(GraphError, match="Invalid parameter"):
            await post_next(runtime, options, journal, media, asyncio.Event())
    finally:
        await journal.close()
    assert value(families(on.exposition()), POSTS, outcome="failed") == 1
