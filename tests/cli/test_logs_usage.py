"""`carrier logs`, `carrier logs show` and `carrier usage` end to end (subprocesses, as an
operator runs them), on SQLite and PostgreSQL, over records stored with
MemoryStore.record_calls (what the usage meter does)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import stable_id
from carrier_cli.usage.records import CallContext, CallRecord, TokenUsage
from tests.helpers import run_carrier

WIDE = {"COLUMNS": "200"}  # a terminal wide enough for every column


def _flat(text: str) -> str:
    return " ".join(text.split())


def _ok(args: list[str], env: dict[str, str]) -> str:
    result = run_carrier(args, env={**WIDE, **env})
    assert result.returncode == 0, f"{args}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli_db(request: pytest.FixtureRequest, carrier_home: Path) -> tuple[dict[str, str], str]:
    """(environment for `carrier`, the database URL it uses)."""
    if request.param == "sqlite":
        return {}, f"sqlite:///{carrier_home / 'data' / 'carrier.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    url = factory()
    return {"DATABASE_URL": url}, url


def call(
    *,
    ago: timedelta = timedelta(0),
    character: str = "Tester",
    purpose: str = "reply",
    client: str = "terminal",
    room_id: uuid.UUID | None = None,
    cost: float | None = 0.0025,
    estimated: bool = False,
    call_id: uuid.UUID | None = None,
    prompt: str | None = None,
    output: str | None = None,
    **fields: object,
) -> CallRecord:
    return CallRecord(
        provider="openai",
        model="gpt-4o-mini",
        context=CallContext(
            purpose=purpose,
            character=character,
            agent_id=stable_id("character", character),
            room_id=room_id,
            client=client,
        ),
        usage=TokenUsage(1200, 80, 1024, estimated=estimated),
        total_ms=412.0,
        first_token_ms=95.0,
        cost_usd=cost,
        prompt=prompt,
        output=output,
        created_at=datetime.now(UTC) - ago,
        id=call_id or uuid.uuid4(),
        **fields,  # type: ignore[arg-type]
    )


def store_calls(url: str, records: Sequence[CallRecord], room: str | None = None) -> uuid.UUID:
    """Record the calls; with `room`, first a terminal room of Tester by that name."""

    async def main() -> uuid.UUID:
        async with await MemoryStore.open(url) as store:
            room_id = uuid.uuid4()
            if room is not None:
                agent = await store.ensure_agent("Tester")
                room_id = (await store.ensure_room(agent, "terminal", room, room)).id
            await store.record_calls(
                [
                    replace(r, context=replace(r.context, room_id=room_id))
                    if room is not None and r.context.room_id is None
                    else r
                    for r in records
                ]
            )
            return room_id

    return asyncio.run(main())


@pytest.mark.slow
def test_logs_and_usage_as_an_operator_uses_them(cli_db: tuple[dict[str, str], str]) -> None:
    env, url = cli_db
    empty = run_carrier(["logs"], env=env)
    assert empty.returncode == 0 and "No model calls recorded yet" in empty.stderr
    assert json.loads(_ok(["logs", "--json"], env)) == []
    assert json.loads(_ok(["usage", "--json"], env))["rows"] == []
    nothing = run_carrier(["usage"], env=env)
    assert nothing.returncode == 0 and "No model calls recorded" in nothing.stderr

    with_prompt = call(ago=timedelta(minutes=1), prompt="user: hi [bold]there[/]", output="hey")
    unpriced = call(
        ago=timedelta(minutes=2),
        character="Bob",
        client="discord",
        purpose="should_respond",
        cost=None,
        estimated=True,
    )
    retried = call(ago=timedelta(minutes=3), outcome="retried", error_code="429")
    old = call(ago=timedelta(days=3), purpose="facts")
    store_calls(url, [old, retried, unpriced, with_prompt])

    table = _ok(["logs"], env)
    (old_line,) = [line for line in table.splitlines() if line.startswith(old.id.hex[:8])]
    assert "facts" in old_line and "Tester" in old_line and "terminal" in old_line
    assert table.index(with_prompt.id.hex[:8]) < table.index(retried.id.hex[:8])  # newest first
    assert "~1200/80/1024" in table and "1200/80/1024" in table
    assert "retry 429" in table and "$0.0025" in table and "—" in table
    assert "unknown price" in table and "estimated" in table

    listed = json.loads(_ok(["logs", "--json"], env))
    assert [c["id"] for c in listed] == [
        str(with_prompt.id),
        str(unpriced.id),
        str(retried.id),
        str(old.id),
    ]
    assert listed[1]["cost_usd"] is None and listed[1]["tokens_estimated"] is True
    assert listed[2]["outcome"] == "retried" and listed[2]["error_code"] == "429"
    assert {"input_tokens", "output_tokens", "cached_tokens", "total_ms", "purpose"} <= set(
        listed[0]
    )
    assert "prompt" not in listed[0]  # only `logs show` carries the texts
    bob = json.loads(_ok(["logs", "--character", "Bob", "--json"], env))
    assert [c["id"] for c in bob] == [str(unpriced.id)]
    assert len(json.loads(_ok(["logs", "--client", "discord", "--json"], env))) == 1
    assert len(json.loads(_ok(["logs", "--purpose", "facts", "--json"], env))) == 1
    assert len(json.loads(_ok(["logs", "--since", "1d", "--json"], env))) == 3
    assert len(json.loads(_ok(["logs", "-n", "2", "--json"], env))) == 2
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert len(json.loads(_ok(["logs", "--since", since, "--json"], env))) >= 3
    assert "No model calls match" in run_carrier(["logs", "--client", "api"], env=env).stderr

    shown = _ok(["logs", "show", with_prompt.id.hex[:8]], env)
    assert "user: hi [bold]there[/]" in shown and "hey" in shown  # literal, never markup
    assert "gpt-4o-mini" in shown and "1024" in shown
    bare = _ok(["logs", "show", str(retried.id)], env)
    assert "not stored" in bare and "log_prompts: true" in _flat(bare)
    full = json.loads(_ok(["logs", "show", with_prompt.id.hex[:6], "--json"], env))
    assert full["prompt"] == "user: hi [bold]there[/]" and full["output"] == "hey"

    report = json.loads(_ok(["usage", "--json"], env))
    assert report["by"] == "character"
    rows = {r["key"]: r for r in report["rows"]}
    assert rows["Tester"]["calls"] == 3 and rows["Tester"]["cost_usd"] == pytest.approx(0.0075)
    assert rows["Bob"]["unpriced_calls"] == 1 and rows["Bob"]["estimated_calls"] == 1
    assert report["total"]["calls"] == 4 and report["total"]["input_tokens"] == 4800
    recent = json.loads(_ok(["usage", "--since", "12h", "--json"], env))
    assert recent["total"]["calls"] == 3
    models = json.loads(_ok(["usage", "--by", "model", "--json"], env))
    assert [r["key"] for r in models["rows"]] == ["openai:gpt-4o-mini"]
    text = _ok(["usage"], env)
    assert "Tester" in text and "per day" in text and "█" in text and "unknown price" in text
    by_day = _ok(["usage", "--by", "day"], env)
    assert datetime.now(UTC).date().isoformat() in by_day and "█" in by_day
    days = json.loads(_ok(["usage", "--by", "day", "--json"], env))["rows"]
    assert [d["calls"] for d in days] == [1, 3]
    by_purpose = _ok(["usage", "--by", "purpose"], env)
    assert "should_respond" in by_purpose and "per day" not in by_purpose


@pytest.mark.slow
def test_bad_flags_exit_2_and_say_what_is_accepted(carrier_home: Path) -> None:
    for args in (
        ["logs", "--since", "yesterday"],
        ["logs", "--since", "5y"],
        ["usage", "--since", "soon"],
    ):
        result = run_carrier(args)
        assert result.returncode == 2, args
        message = _flat(result.stderr)
        assert "--since" in message and "30m, 12h, 1d, 2w" in message and "ISO date" in message
        assert "Traceback" not in result.stderr
    wrong = run_carrier(["usage", "--by", "week"])
    assert wrong.returncode == 2 and "--by 'week'" in _flat(wrong.stderr)
    assert "character, model, client, purpose, day" in _flat(wrong.stderr)


@pytest.mark.slow
def test_show_by_prefix_and_room_filter(carrier_home: Path) -> None:
    url = f"sqlite:///{carrier_home / 'data' / 'carrier.db'}"
    first = call(call_id=uuid.UUID("abcd1234-0000-4000-8000-000000000001"))
    second = call(call_id=uuid.UUID("abcd9999-0000-4000-8000-000000000002"))
    elsewhere = call(room_id=uuid.uuid4())
    room_id = store_calls(url, [first, second, elsewhere], room="kitchen")
    ambiguous = run_carrier(["logs", "show", "abcd"])
    assert ambiguous.returncode == 2
    assert "Several model calls" in ambiguous.stderr and "'abcd'" in ambiguous.stderr
    missing = run_carrier(["logs", "show", "0123abcd"])
    assert missing.returncode == 2 and "No model call has an id starting with" in missing.stderr
    assert json.loads(_ok(["logs", "show", "abcd1", "--json"], {}))["id"] == str(first.id)
    assert f"kitchen ({room_id})" in _ok(["logs", "show", "abcd1"], {})  # the room by name

    in_room = json.loads(_ok(["logs", "--character", "Tester", "--room", "kitchen", "--json"], {}))
    assert {c["id"] for c in in_room} == {str(first.id), str(second.id)}
    assert {c["room_id"] for c in in_room} == {str(room_id)}
    by_id = json.loads(_ok(["logs", "--room", str(room_id), "--json"], {}))
    assert len(by_id) == 2
    unknown = run_carrier(["logs", "--character", "Tester", "--room", "attic"])
    assert unknown.returncode == 2 and "--room 'attic'" in _flat(unknown.stderr)
