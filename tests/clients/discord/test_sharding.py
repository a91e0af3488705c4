"""Discord sharding end to end: real `carrier run` processes, real discord.py
(AutoShardedClient), the fake gateway routing events by shard, one PostgreSQL database.

Two processes split one bot's 2 shards: a message in a guild of shard 0 reaches (and is
answered by) only the process running shard 0, one in a guild of shard 1 only the other,
each exactly once; DMs belong to shard 0. `--shards auto` runs the fake's recommendation.
Bad flags and settings are refused with exit 2 before anything connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx2 as httpx
import pytest

from carrier_cli.clients.discord.sharding import (
    ShardPlan,
    identify_pause,
    parse_shard_count,
    parse_shard_ids,
    plan_from,
    shard_of,
)
from carrier_cli.errors import ConfigError
from tests.clients.discord.harness import (
    ROOT,
    CarrierProcess,
    start_carrier,
    write_character,
    xml_reply,
)
from tests.metrics.scrape import families, value
from tests.support.fake_discord import FakeDiscordServer, guild_on_shard
from tests.support.model_server import ModelServerProcess, Reply

GUILD_0 = guild_on_shard(0, 2)
GUILD_1 = guild_on_shard(1, 2)
CHANNEL_0 = "210000000000000001"
CHANNEL_1 = "210000000000000002"


# -- the rules, without processes ------------------------------------------------------------
def test_guild_ids_land_on_their_shard() -> None:
    assert shard_of(GUILD_0, 2) == 0 and shard_of(GUILD_1, 2) == 1
    assert shard_of(None, 4) == 0  # DMs
    assert shard_of(guild_on_shard(3, 4, index=7), 4) == 3


def test_plan_checks_ids_against_the_count() -> None:
    assert plan_from(None, None) is None
    assert plan_from("2", "1") == ShardPlan(2, (1,))
    assert plan_from("auto", None) == ShardPlan("auto")
    assert plan_from(3, None).describe() == "all 3 shards"  # type: ignore[union-attr]
    assert ShardPlan(4, (0, 2)).describe() == "shards 0, 2 of 4"
    with pytest.raises(ConfigError, match=r"--shard-ids .* without --shards"):
        plan_from(None, [0])
    with pytest.raises(ConfigError, match=r"names shard 2, but with --shards 2 the ids run"):
        plan_from(2, [0, 2])
    with pytest.raises(ConfigError, match="cannot be combined with --shards auto"):
        plan_from("auto", [0])
    with pytest.raises(ValueError, match="lists shard 1 twice"):
        parse_shard_ids("1, 1")
    with pytest.raises(ValueError, match="between 1 and"):
        parse_shard_count("0")
    with pytest.raises(ValueError, match="whole number"):
        parse_shard_count(True)


def test_identify_pauses_only_between_concurrency_groups() -> None:
    assert [identify_pause(i, 1) for i in range(3)] == [0.0, 5.0, 5.0]
    assert [identify_pause(i, 2) for i in range(5)] == [0.0, 0.0, 5.0, 0.0, 5.0]


# -- the fake gateway's shard checks ---------------------------------------------------------
async def _identify(url: str, token: str, shard: object) -> tuple[int | None, dict | None]:
    """IDENTIFY with `shard`; (close code, or None, and the READY payload if any)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.receive_json()  # HELLO
        identify = {"token": token, "intents": 0, "properties": {}}
        if shard is not None:
            identify["shard"] = shard
        await ws.send_json({"op": 2, "d": identify})
        msg = await ws.receive(timeout=5)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return None, json.loads(msg.data)["d"]
        return ws.close_code, None


def test_fake_gateway_checks_each_identify_shard_pair() -> None:
    server = FakeDiscordServer(guilds={GUILD_0: [CHANNEL_0], GUILD_1: [CHANNEL_1]})
    server.start_in_thread()
    try:

        def identify(shard: object) -> tuple[int | None, dict | None]:
            return asyncio.run(_identify(server.gateway_url, server.token, shard))

        assert identify([2, 2])[0] == 4010  # id outside 0..count-1
        assert identify([0, 0])[0] == 4010
        assert identify("0,2")[0] == 4010
        code, ready = identify([1, 2])
        assert code is None and ready is not None
        assert ready["shard"] == [1, 2]
        assert [g["id"] for g in ready["guilds"]] == [GUILD_1]  # only its own guilds
        _, unsharded = identify(None)
        assert unsharded is not None and len(unsharded["guilds"]) == 2
        server.required_shards = 2
        assert identify([0, 1])[0] == 4011  # fewer shards than the bot needs
    finally:
        server.stop_thread()


# -- flags and settings: exit 2, before anything connects --------------------------------------
def carrier_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CARRIER_", "DISCORD_"))}
    full_env.update(
        {
            "CARRIER_HOME": str(tmp_path / "home"),
            "CARRIER_KEYRING": "file",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
    )
    character = write_character(tmp_path / "c.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "run", "--character", str(character), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--shards", "0"], "--shards must be between 1 and"),
        (["--shards", "two"], "--shards must be a whole number of shards ≥ 1 or `auto`"),
        (["--shards", "2", "--shard-ids", "1,1"], "--shard-ids lists shard 1 twice"),
        (["--shards", "2", "--shard-ids", "0,x"], "--shard-ids 'x' is not a shard id"),
        (["--shards", "2", "--shard-ids", "0,2"], "names shard 2, but with --shards 2"),
        (["--shard-ids", "0"], "--shard-ids (setting discord_shard_ids"),
        (["--shards", "auto", "--shard-ids", "0"], "cannot be combined with --shards auto"),
        (["--client", "instagram", "--shards", "2"], "this process runs no Discord client"),
    ],
)
def test_bad_shard_flags_exit_2_naming_the_flag(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    # A token is set: the shard check must come first, and the token must not be shown.
    stderr = carrier_run(tmp_path, *args, env={"DISCORD_API_TOKEN": "tok-0123456789abcdef"})
    assert expected in stderr
    assert "tok-0123456789abcdef" not in stderr


def test_shard_ids_setting_without_a_count_is_refused(tmp_path: Path) -> None:
    stderr = carrier_run(tmp_path, env={"CARRIER_DISCORD_SHARD_IDS": "0"})
    assert "without --shards (setting discord_shards, CARRIER_DISCORD_SHARDS)" in stderr


def test_bad_shards_setting_names_the_setting(tmp_path: Path) -> None:
    stderr = carrier_run(tmp_path, env={"CARRIER_DISCORD_SHARDS": "-3"})
    assert "`discord_shards` (from env CARRIER_DISCORD_SHARDS): must be between 1" in stderr


# -- two processes, one bot, one database ----------------------------------------------------
def _two_guild_fake(**kwargs: int) -> FakeDiscordServer:
    server = FakeDiscordServer(guilds={GUILD_0: [CHANNEL_0], GUILD_1: [CHANNEL_1]}, **kwargs)
    server.start_in_thread()
    return server


@pytest.fixture(scope="module")
def discord() -> Iterator[FakeDiscordServer]:
    server = _two_guild_fake()
    try:
        yield server
    finally:
        server.stop_thread()


@dataclass
class ShardPair:
    """The two processes of one bot (index = the shard it runs), and how to start one again
    (same home, same database, same flags)."""

    processes: list[CarrierProcess]
    start: Callable[[int], CarrierProcess]
    stopped: list[CarrierProcess] = field(default_factory=list)

    def restart(self, shard: int, *, kill: bool = False) -> CarrierProcess:
        old = self.processes[shard]
        if kill:
            old.process.kill()  # SIGKILL: no drain, no answered marks
            old.wait_exit(10)
        else:
            assert old.terminate() == 0
        self.stopped.append(old)
        self.processes[shard] = self.start(shard)
        return self.processes[shard]


@pytest.fixture(scope="module")
def shard_pair(
    discord: FakeDiscordServer,
    model: ModelServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
) -> Iterator[ShardPair]:
    """Process 0 runs shard 0 of 2, process 1 shard 1, on one PostgreSQL database (each
    with its own home, as on two machines)."""
    from tests.support.postgres import _run, with_database

    name = f"carrier_shards_{uuid.uuid4().hex[:12]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    root = tmp_path_factory.mktemp("shards")
    character = write_character(root / "carrier.yaml")
    env = {
        "CARRIER_DATABASE_URL": with_database(postgres_admin_url, name),
        "CARRIER_SHUTDOWN_GRACE": "5",
    }
    started: list[CarrierProcess] = []

    def start(shard: int) -> CarrierProcess:
        process = start_carrier(
            discord,
            model.url,
            root / f"home{shard}",
            [character],
            env=env,
            args=["--shards", "2", "--shard-ids", str(shard)],
        )
        started.append(process)
        process.wait_status()
        return process

    try:
        # One after the other: the first one migrates the database.
        yield ShardPair([start(0), start(1)], start)
    finally:
        for process in started:
            with contextlib.suppress(Exception):
                process.terminate()
        with contextlib.suppress(Exception):
            _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _turn_lines(process: CarrierProcess, text: str) -> list[str]:
    return [line for line in process.log_lines(f"{text}'") if "Discord[Carrier]" in line]


def _answered_by_one(
    discord: FakeDiscordServer,
    owner: CarrierProcess,
    other: CarrierProcess,
    text: str,
    **where: object,
) -> None:
    message = discord.dispatch_message(f"<@{discord.bot_id}> {text}", **where)
    reply = discord.wait_reply(message, timeout=30)
    assert reply.content.startswith("Echo: ") and reply.content.endswith(text)
    lines = discord.wait_for(lambda: _turn_lines(owner, text), 15, "the owner's turn log line")
    assert "replied in 1 message" in lines[0]
    time.sleep(1.0)  # time for a second answer, if anything were to give one
    assert [m for m in discord.sent_messages() if m.reply_to == message["id"]] == [reply]
    assert _turn_lines(other, text) == []
    assert len(_turn_lines(owner, text)) == 1


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_each_process_identifies_its_own_shard(
    shard_pair: ShardPair, discord: FakeDiscordServer
) -> None:
    first, second = shard_pair.processes
    status_0 = first.wait_status()
    status_1 = second.wait_status()
    assert status_0.endswith("as character Carrier, shard 0 of 2"), status_0
    assert status_1.endswith("as character Carrier, shard 1 of 2"), status_1
    assert "1 guild (Guild" in status_0 and "1 guild (Guild" in status_1
    assert sorted(discord.shard_identifies) == [(0, 2), (1, 2)]


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_guild_messages_are_answered_once_by_the_shard_owner(
    shard_pair: ShardPair, discord: FakeDiscordServer
) -> None:
    first, second = shard_pair.processes
    _answered_by_one(discord, first, second, "hello shard zero", channel_id=CHANNEL_0)
    _answered_by_one(discord, second, first, "hello shard one", channel_id=CHANNEL_1)
    routed = {
        text: discord.routed[m_id]
        for m_id, sent in discord.dispatched.items()
        for text in ("hello shard zero", "hello shard one")
        if text in discord.messages[m_id]["content"]
    }
    assert routed == {"hello shard zero": [(0, 2)], "hello shard one": [(1, 2)]}


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_direct_messages_go_to_shard_zero(
    shard_pair: ShardPair, discord: FakeDiscordServer
) -> None:
    first, second = shard_pair.processes
    _answered_by_one(discord, first, second, "a private word", dm=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_catch_up_after_a_crash_stays_in_the_shard(
    shard_pair: ShardPair, discord: FakeDiscordServer, model: ModelServerProcess
) -> None:
    """A turn of shard 0 cut off by a kill is stored but unanswered: the process of shard 1
    restarting leaves it alone (its guild is not on shard 1), shard 0's answers it once."""
    model.push(Reply(text=xml_reply("never sent"), delay=60))
    text = "cut off on shard zero"
    message = discord.dispatch_message(f"<@{discord.bot_id}> {text}", channel_id=CHANNEL_0)
    discord.wait_for(
        lambda: any(text in r.prompt_text for r in model.requests("/v1/chat/completions")),
        15,
        "the turn at the model",
    )
    shard_pair.processes[0].process.kill()  # stored, at the model, never answered
    shard_pair.processes[0].wait_exit(10)

    other = shard_pair.restart(1)
    discord.wait_for(lambda: other.log_lines("caught up 0 unanswered messages"), 30, "catch-up")
    assert not [m for m in discord.sent_messages() if m.reply_to == message["id"]]

    model.push(Reply(text=xml_reply("answered after the crash")))
    shard_pair.stopped.append(shard_pair.processes[0])
    owner = shard_pair.processes[0] = shard_pair.start(0)
    discord.wait_for(lambda: owner.log_lines("caught up 1 unanswered message"), 30, "catch-up")
    time.sleep(0.5)
    replies = [m.content for m in discord.sent_messages() if m.reply_to == message["id"]]
    assert replies == ["answered after the crash"], owner.stderr
    assert "Traceback" not in owner.stderr + other.stderr


# -- --shards auto -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.service
def test_shards_auto_runs_the_recommended_count(model: ModelServerProcess, tmp_path: Path) -> None:
    # max_concurrency 2: both shards may IDENTIFY at once (no 5 s pause between them).
    server = _two_guild_fake(recommended_shards=2, max_concurrency=2)
    process = None
    try:
        character = write_character(tmp_path / "carrier.yaml")
        port = free_port()  # metrics on: the metered bot runs sharded too
        args = ["--shards", "auto", "--metrics-port", str(port)]
        process = start_carrier(server, model.url, tmp_path / "home", [character], args=args)
        status = process.wait_status()
        assert status.endswith("as character Carrier, all 2 shards"), status
        assert "2 guilds" in status
        assert sorted(server.shard_identifies) == [(0, 2), (1, 2)]
        assert any(path.endswith("/gateway/bot") for _, path, _ in server.requests)
        assert process.log_lines("runs 2 shards (Discord's recommendation)")
        for channel in (CHANNEL_0, CHANNEL_1):
            message = server.dispatch_message(f"<@{server.bot_id}> hi", channel_id=channel)
            assert server.wait_reply(message, timeout=30).content.endswith(" hi")
        turns = {"character": "Carrier", "client": "discord", "decision": "mentioned"}

        def counted() -> dict[str, Any] | None:
            url = f"http://127.0.0.1:{port}/metrics"
            parsed = families(httpx.get(url, timeout=10).content)
            return parsed if value(parsed, "carrier_turns_total", **turns) == 2 else None

        parsed = server.wait_for(counted, 15, "both turns counted")
        # Two shards connecting at start are two connections, not a reconnect.
        assert value(parsed, "carrier_discord_gateway_reconnects_total", character="Carrier") == 0
        assert process.terminate() == 0
        assert "Traceback" not in process.stderr
        assert "Message Content intent is not enabled" not in process.stderr
    finally:
        if process is not None and process.process.poll() is None:
            process.process.kill()
        server.stop_thread()


@pytest.mark.slow
@pytest.mark.service
def test_too_few_shards_is_a_clear_error(model: ModelServerProcess, tmp_path: Path) -> None:
    """Discord closes the gateway with 4011 when a bot that needs more shards identifies
    with fewer: exit 1, saying what to run instead."""
    server = _two_guild_fake(recommended_shards=2, required_shards=2)
    try:
        character = write_character(tmp_path / "carrier.yaml")
        process = start_carrier(
            server, model.url, tmp_path / "home", [character], args=["--shards", "1"]
        )
        assert process.wait_exit(60) == 1
        stderr = " ".join(process.stderr.split())
        assert "Discord refused the shard of the Discord bot of character 'Carrier'" in stderr
        assert "(close code 4011)" in stderr and "--shards auto" in stderr
        assert "Traceback" not in stderr
        assert process.log_lines("Discord recommends 2 shards")  # said before connecting
    finally:
        server.stop_thread()
