"""Webhooks from a real `carrier serve` process (with the Discord client against the fake
Discord, so turns happen inside the server): signed deliveries of a turn's events, a
receiver failing twice, the CLI over the same database, and a SIGKILL mid-retry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_carrier
from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.fake_discord import FakeDiscordServer
from tests.support.model_server import ModelServerProcess
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.service]

SECRET = "serve-webhook-secret-0123"
GUILD = "100000000000000001"


@dataclass
class Setup:
    serve: ServeProcess
    discord: FakeDiscordServer
    env: dict[str, str]
    receivers: dict[str, Receiver]

    def cli(self, *args: str) -> Any:
        return run_carrier(list(args), env=self.env, cwd=self.serve.home.parent)

    def deliveries(self) -> list[dict[str, Any]]:
        result = self.cli("webhooks", "deliveries", "--json", "--limit", "100")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]


def _start(
    root: Path, model: ModelServerProcess, receivers: dict[str, tuple[Receiver, list[str]]]
) -> tuple[ServeProcess, FakeDiscordServer, dict[str, str]]:
    discord = FakeDiscordServer(guilds={GUILD: ["200000000000000001"]})
    discord.start_in_thread()
    hooks = [
        {"name": name, "url": rx.url, "events": events, "secret_env": "WH_SECRET"}
        for name, (rx, events) in receivers.items()
    ]
    env = {
        "CARRIER_WEBHOOKS": json.dumps(hooks),
        "CARRIER_WEBHOOKS_ALLOW_PRIVATE": "true",
        "CARRIER_WEBHOOK_RETRY_DELAY": "0.3",
        "CARRIER_WEBHOOK_TIMEOUT": "2",
        "WH_SECRET": SECRET,
        **discord.env(),
    }
    character = write_character(root / "carrier.yaml")
    serve = start_serve(
        root / "home", model.url, characters=[character], args=["--client", "discord"], env=env
    )
    return serve, discord, serve_env(root / "home", model.url, env)


@pytest.fixture(scope="module")
def setup(model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    everything = Receiver(SECRET).start()
    flaky = Receiver(SECRET).start()
    errors = Receiver(SECRET).start()
    receivers = {
        "all": (everything, ["message.created", "reply.completed"]),
        "flaky": (flaky, ["reply.completed"]),
        "errors": (errors, ["agent.error"]),
    }
    serve, discord, env = _start(tmp_path_factory.mktemp("serve-hooks"), model, receivers)
    try:
        yield Setup(serve, discord, env, {"all": everything, "flaky": flaky, "errors": errors})
    finally:
        serve.terminate()
        discord.stop_thread()
        everything.stop()
        flaky.stop()
        errors.stop()


def _turn(discord: FakeDiscordServer, text: str, author: str) -> tuple[dict[str, Any], Any]:
    message = discord.dispatch_message(text, dm=True, author_id=author)
    return message, discord.wait_reply(message, timeout=30)


def test_a_turn_is_delivered_signed_message_reply_and_completion(setup: Setup) -> None:
    rx = setup.receivers["all"]
    _, reply = _turn(setup.discord, "hello webhooks", "400000000000000201")

    def mine() -> list[Any]:
        found = [
            r for r in rx.requests() if "hello webhooks" in json.dumps(r.json) and r.status == 200
        ]
        return found if len(found) >= 3 else []

    got = rx.wait_for(mine, what="the turn's three deliveries")
    assert all(r.verified for r in got)
    by_type: dict[str, list[Any]] = {}
    for r in got:
        by_type.setdefault(r.event, []).append(r)
    assert len(by_type["message.created"]) == 2 and len(by_type["reply.completed"]) == 1
    texts = sorted(r.json["data"]["message"]["text"] for r in by_type["message.created"])
    assert texts == sorted(["hello webhooks", reply.content])
    completed = by_type["reply.completed"][0].json
    assert completed["data"]["reply"]["text"] == reply.content
    assert completed["data"]["agent"] == "Carrier"
    assert completed["type"] == "reply.completed" and completed["id"]
    assert len({r.delivery for r in got}) == 3  # one delivery id each
    assert SECRET not in setup.serve.stderr and SECRET not in setup.serve.stdout
    signature = got[0].headers["X-Carrier-Signature"]
    assert signature not in setup.serve.stderr


def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(setup: Setup) -> None:
    flaky = setup.receivers["flaky"]
    # Earlier turns' deliveries first, so the script's two 500s fall on this one's.
    flaky.wait_for(
        lambda: all(d["status"] != "pending" for d in setup.deliveries()), what="a quiet outbox"
    )
    flaky.script[:] = [500, 500]
    _turn(setup.discord, "flaky one", "400000000000000202")

    def this_turn() -> list[Any]:
        return [r for r in flaky.requests() if "flaky one" in r.body.decode()]

    got = flaky.wait_for(
        lambda: [r for r in this_turn() if r.status == 200], what="the third attempt"
    )
    attempts = this_turn()
    assert [r.status for r in attempts] == [500, 500, 200]
    assert len({r.delivery for r in attempts}) == 1 and all(r.verified for r in attempts)
    assert got[0].json["data"]["reply"]["text"] == "Echo: flaky one"
    # The receiver records a request before it answers: the row says so a moment later.
    row = flaky.wait_for(
        lambda: [
            d for d in setup.deliveries() if d["id"] == got[0].delivery and d["status"] != "pending"
        ],
        what="the delivery row to be settled",
    )[0]
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["webhook"] == "flaky"


def test_a_failed_turn_is_delivered_as_agent_error(setup: Setup, model: ModelServerProcess) -> None:
    errors = setup.receivers["errors"]
    # Earlier turns' background calls (evaluators) done, so the 500 falls on this turn.
    seen = -1
    while len(model.requests()) != seen:
        seen = len(model.requests())
        time.sleep(0.5)
    model.push(status=500, error_message="the model is down")
    message = setup.discord.dispatch_message(
        "this turn fails", dm=True, author_id="400000000000000204"
    )
    got = errors.wait_for(lambda: errors.requests("agent.error"), what="agent.error")
    data = got[0].json["data"]
    assert got[0].verified and data["agent"] == "Carrier"
    assert data["message_id"] and data["error"]["type"]
    assert data["room"]["source"] == "discord"
    setup.discord.wait_reply(message, timeout=30)  # the apology
    # Nothing else reached the errors-only receiver.
    assert {r.event for r in errors.requests()} == {"agent.error"}


def test_cli_lists_tests_and_redelivers(setup: Setup) -> None:
    listed = setup.cli("webhooks", "list")
    assert listed.returncode == 0 and "flaky" in listed.stdout and SECRET not in listed.stdout
    tested = setup.cli("webhooks", "test", "all")
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.startswith("200 in ")
    probe = setup.receivers["all"].wait_for(
        lambda: setup.receivers["all"].requests("webhook.test"), what="the test delivery"
    )
    assert probe[0].verified

    rows = setup.deliveries()
    assert rows and all(r["status"] in ("pending", "delivered") for r in rows)
    target = next(r for r in rows if r["status"] == "delivered" and r["webhook"] == "all")
    flaky = setup.receivers["all"]
    before = len([r for r in flaky.requests() if r.delivery == target["id"]])
    again = setup.cli("webhooks", "redeliver", target["id"][:10])
    assert again.returncode == 0, again.stderr
    flaky.wait_for(
        lambda: len([r for r in flaky.requests() if r.delivery == target["id"]]) > before,
        what="the redelivery",
    )

    failed = setup.cli("webhooks", "deliveries", "--failed")
    assert failed.returncode == 0 and "No failed deliveries" in failed.stdout + failed.stderr
    missing = setup.cli("webhooks", "redeliver", "ffffffff")
    assert missing.returncode == 2 and "No delivery has" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = setup.cli("webhooks", "test", "ftp://nowhere.example")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_server_killed_mid_retry_delivers_it_exactly_once_after_restart(
    model: ModelServerProcess, tmp_path: Path
) -> None:
    rx = Receiver(SECRET, failing=True).start()
    serve, discord, env = _start(tmp_path, model, {"late": (rx, ["reply.completed"])})
    try:
        _turn(discord, "survive a crash", "400000000000000203")
        rx.wait_for(lambda: rx.requests(), what="a first, failing attempt")
        serve.kill()  # SIGKILL while the delivery waits for its next attempt
        tried = rx.requests()
        assert tried and all(r.status == 500 for r in tried)
        delivery = tried[0].delivery
        listed = run_carrier(["webhooks", "deliveries", "--json"], env=env, cwd=tmp_path)
        [row] = json.loads(listed.stdout)
        assert row["id"] == delivery and row["status"] == "pending"

        rx.failing = False
        discord.stop_thread()
        serve, discord, env = _start(tmp_path, model, {"late": (rx, ["reply.completed"])})
        ok = rx.wait_for(
            lambda: [r for r in rx.requests() if r.status == 200], timeout=30, what="delivery"
        )
        time.sleep(1.5)  # a second sender or a double send would show up by now
        delivered = [r for r in rx.requests() if r.status == 200]
        assert len(delivered) == 1 and ok[0].delivery == delivery
        assert {r.delivery for r in rx.requests()} == {delivery}
        assert delivered[0].verified
        listed = run_carrier(["webhooks", "deliveries", "--json"], env=env, cwd=tmp_path)
        [row] = json.loads(listed.stdout)
        # An attempt the killed process made but had no time to record is not counted.
        assert row["status"] == "delivered"
        assert len(rx.requests()) - 1 <= row["attempts"] <= len(rx.requests())
    finally:
        serve.terminate()
        discord.stop_thread()
        rx.stop()
