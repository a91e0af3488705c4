"""Plugins: discovery (character list, entry points), and the example plugin in real turns."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import pytest

from carrier_cli.errors import InputError
from carrier_cli.runtime import example_plugin
from carrier_cli.runtime.plugins import (
    ENTRY_POINT_GROUP,
    Action,
    Evaluator,
    Plugin,
    Provider,
    discover_plugins,
    entry_points,
    load_plugin,
)
from tests.runtime.conftest import dm, reply_xml


def test_example_plugin_implements_the_protocols():
    plugin = example_plugin.plugin
    assert all(isinstance(a, Action) for a in plugin.actions)
    assert all(isinstance(p, Provider) for p in plugin.providers)
    assert all(isinstance(e, Evaluator) for e in plugin.evaluators)


def test_example_is_registered_as_an_entry_point_but_not_autoloaded():
    eps = entry_points()
    assert eps["example"].group == ENTRY_POINT_GROUP
    assert load_plugin("example") is example_plugin.plugin
    assert "example" not in [p.name for p in discover_plugins()]
    assert [p.name for p in discover_plugins(["example"])] == ["example"]


@dataclass
class _FakeEntryPoint:
    name: str
    target: object

    def load(self) -> object:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def test_autoload_entry_points_and_broken_ones_are_skipped(caplog):
    auto = Plugin(name="auto")
    eps = {
        "auto": _FakeEntryPoint("auto", lambda: auto),
        "broken": _FakeEntryPoint("broken", ImportError("missing dependency")),
        "optin": _FakeEntryPoint("optin", Plugin(name="optin", autoload=False)),
    }
    with caplog.at_level(logging.WARNING):
        found = discover_plugins(loader=lambda: eps)
    assert [p.name for p in found] == ["auto"]
    assert any("broken" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("no_such_module_xyz", "cannot be imported"),
        ("carrier_cli.runtime.example_plugin:nope", "no attribute 'nope'"),
        ("carrier_cli.runtime.templates", "has no `plugin` attribute"),
        ("carrier_cli.runtime.templates:render", "does not provide"),
    ],
)
def test_bad_plugin_refs_name_the_field(ref, fragment):
    with pytest.raises(InputError) as err:
        discover_plugins([ref])
    assert fragment in str(err.value)
    assert "plugins:" in str(err.value) or "Plugin" in str(err.value)


def test_npm_plugins_of_imported_eliza_characters_are_skipped():
    assert discover_plugins(["@elizaos/plugin-bootstrap"]) == []


def _roller(messages):
    content = messages[-1].content
    if "Extract lasting facts" in content:
        return "<facts></facts>"
    if "roll" in content.split("<conversation>")[-1].lower():
        return reply_xml("Rolling for you!", actions="REPLY,ROLL_DICE")
    return reply_xml("Hello.", actions="REPLY,ROLL_DICE")


@pytest.mark.parametrize("ref", ["carrier_cli.runtime.example_plugin", "example"])
async def test_example_plugin_through_the_character(sqlite_store, make_runtime, character, ref):
    with_plugin = character.model_copy(update={"plugins": [ref]})
    runtime = await make_runtime(sqlite_store, _roller, character_=with_plugin)
    result = await runtime.handle_message(dm("roll 3d6 for my stealth check", "r1"))
    assert result.text == "Rolling for you!"
    assert result.actions == ["REPLY", "ROLL_DICE"]
    assert len(result.extra_messages) == 1
    match = re.fullmatch(r"🎲 3d6: (\d) \+ (\d) \+ (\d) = (\d+)", result.extra_messages[0])
    assert match is not None
    assert sum(int(match.group(i)) for i in (1, 2, 3)) == int(match.group(4))
    prompt = runtime.model.calls[0].messages[-1].content
    assert "ROLL_DICE: Roll dice" in prompt and "roll a d20 for my attack" in prompt
    room = (await sqlite_store.get(result.message_id)).room_id
    texts = [m.text for m in await sqlite_store.recent(room)]
    assert texts == ["roll 3d6 for my stealth check", "Rolling for you!", result.extra_messages[0]]
    await runtime.wait_idle()  # the evaluator counted the roll; the provider reports it
    await runtime.handle_message(dm("and another roll please"))
    assert "There have been 1 dice rolls" in runtime.model.calls[-1].messages[-1].content


async def test_action_not_offered_is_not_run(sqlite_store, make_runtime, character):
    with_plugin = character.model_copy(update={"plugins": ["example"]})
    runtime = await make_runtime(sqlite_store, _roller, character_=with_plugin)
    result = await runtime.handle_message(dm("hello there"))
    assert result.text == "Hello." and result.extra_messages == []
    assert "ROLL_DICE" not in runtime.model.calls[0].messages[-1].content.split("<actions>")[1]


async def test_simile_selects_the_action(sqlite_store, make_runtime, character):
    with_plugin = character.model_copy(update={"plugins": ["example"]})
    runtime = await make_runtime(
        sqlite_store, [reply_xml("ok", actions="reply, throw_dice")], character_=with_plugin
    )
    result = await runtime.handle_message(dm("roll a d20"))
    assert re.fullmatch(r"🎲 1d20: \d+", result.extra_messages[0])


class _ValuesProvider:
    name = "weather"

    async def get(self, ctx):
        return {"weather": f"Sunny where {ctx.message.sender_name} is."}


class _BrokenProvider:
    name = "broken"

    async def get(self, ctx):
        raise RuntimeError("provider exploded")


class _BrokenAction:
    name = "EXPLODE"
    similes = ()
    description = "Always fails."
    examples = ()

    async def validate(self, ctx):
        return True

    async def handler(self, ctx):
        raise RuntimeError("action exploded")


async def test_provider_values_and_failures_do_not_break_a_turn(
    sqlite_store, make_runtime, character
):
    custom = character.model_copy(
        update={
            "templates": {"message_handler": "W={{weather}} {{actionNames}} <actions>"},
        }
    )
    plugin = Plugin(
        name="extras", providers=[_ValuesProvider(), _BrokenProvider()], actions=[_BrokenAction()]
    )
    runtime = await make_runtime(
        sqlite_store,
        [reply_xml("fine", actions="REPLY,EXPLODE")],
        character_=custom,
        plugins=[plugin],
    )
    result = await runtime.handle_message(dm("hi"))
    assert result.text == "fine" and result.extra_messages == []
    prompt = runtime.model.calls[0].messages[-1].content
    assert prompt.startswith("W=Sunny where Bob is. REPLY, IGNORE, NONE, CONTINUE, EXPLODE")


class _HangingProvider:
    name = "hang"

    async def get(self, ctx):
        await asyncio.sleep(3600)


async def test_a_hanging_provider_is_cut_off(sqlite_store, make_runtime):
    runtime = await make_runtime(
        sqlite_store,
        [reply_xml("still here")],
        plugins=[Plugin(name="h", providers=[_HangingProvider()])],
    )
    runtime.plugin_timeout = 0.2
    result = await asyncio.wait_for(runtime.handle_message(dm("hi")), 10)
    assert result.text == "still here"
