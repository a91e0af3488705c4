"""How many times the model is asked per answer, counted at the fake model server (real openai
SDK): a reply without any tags is an answer (one request), only broken markup is asked again,
and at most once (two requests), for chat replies, posts/captions and should-respond alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.clients.instagram.service import generate_caption
from carrier_cli.config import Settings
from carrier_cli.runtime.agent import AgentRuntime
from tests.runtime.conftest import dm, group, reply_xml
from tests.support.model_server import FakeModelServer, RecordedRequest

pytestmark = pytest.mark.service

CHAT = "/v1/chat/completions"
# Cut off inside the format: opened tags that never carry a text.
BROKEN = "<response><thought>Let me think about how to answer th"


def _settings(server: FakeModelServer) -> Settings:
    return Settings(
        model_provider="openai",
        openai_api_key="sk-test-parse-retry-0001",
        openai_base_url=server.openai_base_url,
    )


def _reply_calls(server: FakeModelServer) -> list[RecordedRequest]:
    return [r for r in server.requests(CHAT) if "Generate dialog" in r.prompt_text]


def _decision_calls(server: FakeModelServer) -> list[RecordedRequest]:
    return [r for r in server.requests(CHAT) if "Decide whether" in r.prompt_text]


def _post_calls(server: FakeModelServer) -> list[RecordedRequest]:
    return [r for r in server.requests(CHAT) if "Write a post for" in r.prompt_text]


@pytest.fixture
async def runtime(model_server: FakeModelServer, sqlite_store, character):
    made = await AgentRuntime.create(character, _settings(model_server), store=sqlite_store)
    try:
        yield made
    finally:
        await made.aclose()


# -- chat replies ------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_plain_text_model_costs_one_request_per_turn(model_server, runtime, stream):
    model_server.plain = True
    model_server.default_text = "Hello there."
    for n in range(3):
        message = dm(f"hi number {n}")
        if stream:
            events = [e async for e in runtime.stream_message(message)]
            deltas = "".join(e.text or "" for e in events if e.kind == "delta")
            result = events[-1].result
            assert deltas == "Hello there."  # a streaming client sees the reply too
        else:
            result = await runtime.handle_message(message)
        assert result.text == "Hello there." and result.actions == ["REPLY"]
        assert len(_reply_calls(model_server)) == n + 1  # exactly one call per turn
        assert runtime.last_turn_log.parse_failures == 0


async def test_plain_text_keeps_code_blocks_and_angle_brackets(model_server, runtime):
    text = "Use a list:\n\n```python\nxs = [1, 2]\nprint(xs[0] < 2)\n```\nThat's it & done."
    model_server.push(text)
    result = await runtime.handle_message(dm("how do I make a list?"))
    assert result.text == text
    assert len(_reply_calls(model_server)) == 1


async def test_good_xml_costs_one_request(model_server, runtime):
    model_server.push(reply_xml("Fine, thanks.", thought="be polite"))
    result = await runtime.handle_message(dm("how are you?"))
    assert (result.text, result.thought) == ("Fine, thanks.", "be polite")
    assert len(_reply_calls(model_server)) == 1


async def test_broken_markup_is_asked_again_once(model_server, runtime):
    model_server.push(BROKEN, reply_xml("Second time right."))
    result = await runtime.handle_message(dm("hello"))
    assert result.text == "Second time right."
    assert len(_reply_calls(model_server)) == 2
    assert runtime.last_turn_log.parse_failures == 1


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_broken_markup_twice_stops_after_two_requests(model_server, runtime, stream):
    model_server.push(
        "<response><actions>REPLY</actions></response>",  # REPLY but no text
        "<response><thought>hm</thought><actions>REPLY</actions><text></text></response>",
        reply_xml("never asked for"),
    )
    message = dm("hello?")
    if stream:
        events = [e async for e in runtime.stream_message(message)]
        result = events[-1].result
    else:
        result = await runtime.handle_message(message)
    assert len(_reply_calls(model_server)) == 2
    assert runtime.last_turn_log.parse_failures == 2
    assert result.text != "never asked for"


# -- should-respond ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "decision"),
    [
        ("RESPOND", "RESPOND"),
        ("IGNORE", "IGNORE"),
        ("STOP", "STOP"),
        ("Yes", "RESPOND"),
        ("yes, they are asking about tea.", "RESPOND"),
        ("No.", "IGNORE"),
        ("no", "IGNORE"),
        ("<response><action>RESPOND</action></response>", "RESPOND"),
    ],
)
async def test_should_respond_answer_without_tags_is_one_request(
    model_server, runtime, answer, decision
):
    model_server.plain = True  # the reply, if there is one, is plain text too
    model_server.push(answer)
    result = await runtime.handle_message(group("anyone up for tea later?"))
    assert result.decision == decision
    assert len(_decision_calls(model_server)) == 1
    assert len(_reply_calls(model_server)) == (1 if decision == "RESPOND" else 0)


async def test_should_respond_broken_markup_is_asked_again_once(model_server, runtime):
    model_server.plain = True
    model_server.push("<response><thought>The message is about", "RESPOND")
    result = await runtime.handle_message(group("anyone up for tea later?"))
    assert result.decision == "RESPOND"
    assert len(_decision_calls(model_server)) == 2


async def test_should_respond_broken_markup_twice_ignores(model_server, runtime):
    model_server.push("<response><thought>Hmm", "<response><action>", "RESPOND")
    result = await runtime.handle_message(group("anyone up for tea later?"))
    assert result.decision == "IGNORE"
    assert len(_decision_calls(model_server)) == 2


# -- posts and Instagram captions --------------------------------------------------------------
async def test_plain_text_post_is_one_request(model_server, runtime):
    model_server.push("Salt on the wind, and the tide going out.")
    assert await runtime.generate_post() == "Salt on the wind, and the tide going out."
    assert len(_post_calls(model_server)) == 1


async def test_broken_post_markup_is_asked_again_once(model_server, runtime):
    model_server.push("<response><thought>tides</thought>", reply_xml("The tide, again."))
    assert await runtime.generate_post() == "The tide, again."
    assert len(_post_calls(model_server)) == 2


async def test_plain_text_caption_is_one_request(model_server, character, tmp_path: Path):
    model_server.push("Morning light over the harbour.")
    character.clients.instagram.hashtags = ["sea"]
    caption = await generate_caption(
        _settings(model_server), character, "photo", [tmp_path / "harbour.jpg"]
    )
    assert caption == "Morning light over the harbour.\n\n#sea"
    assert len(_post_calls(model_server)) == 1
