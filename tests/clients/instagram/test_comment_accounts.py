"""A character with its own Instagram account answers the comments on its own posts, with
its own token (accounts.py wired into the comment replier)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.character.loader import load_character
from carrier_cli.clients.instagram.autopost import run_instagram_client
from carrier_cli.config import load_settings
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.secrets import SecretStore
from tests.clients.instagram.test_comment_replies import (  # noqa: F401 (fixtures)
    _fresh_governors,
    graph_env,
    reply_xml,
)
from tests.support.instagram_servers import FakeGraph
from tests.support.model_server import FakeModelServer

MARINA_ID = "17841400000000002"
MARINA_TOKEN = "IGAAmarinatoken0123456789abcdefXYZ"


def replies(fake: FakeGraph, comment_id: str) -> list[Any]:
    return [c for c in fake.comments.comments.values() if c.parent_id == comment_id]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_characters_account_answers_its_own_posts(
    graph_env: FakeGraph,  # noqa: F811 (the fixture imported above)
    model_server: FakeModelServer,
    tmp_path: Path,
) -> None:
    fake = graph_env
    fake.add_account(MARINA_ID, MARINA_TOKEN, "marina.sails")
    SecretStore().set("instagram:marina", MARINA_TOKEN)
    path = tmp_path / "marina.yaml"
    path.write_text(
        "name: Marina\nbio: [A sailor.]\nclients:\n  instagram:\n    reply_to_comments: true\n"
        f'    account_key: instagram:marina\n    account_id: "{MARINA_ID}"\n',
        encoding="utf-8",
    )
    theirs = fake.comments.add_post("On the main account.")
    mine = fake.comments.add_post("On marina's account.")
    fake.published[-1]["account"] = MARINA_ID
    other = fake.comments.add_comment(theirs, "Not for marina")
    comment = fake.comments.add_comment(mine, "Lovely boat!")
    model_server.push(reply_xml("Thank you, she is called Tide."))
    settings = load_settings().settings
    runtime = await AgentRuntime.create(load_character(path), settings)
    stop = asyncio.Event()
    task = asyncio.create_task(run_instagram_client(runtime, settings, stop))
    try:
        deadline = time.monotonic() + 15
        while not replies(fake, comment):
            assert time.monotonic() < deadline and not task.done(), task
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # more polls: nothing twice, nothing on the other account
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await runtime.aclose()
    [reply] = replies(fake, comment)
    assert reply.text == "Thank you, she is called Tide." and reply.user_id == MARINA_ID
    assert reply.username == "marina.sails" and not replies(fake, other)
    assert ("GET", f"/v25.0/{MARINA_ID}/media") in fake.requests
