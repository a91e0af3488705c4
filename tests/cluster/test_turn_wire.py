"""The queued entry and the result entries survive the trip through Redis' bytes, and
nothing of the turn queue loads redis-py in a process without redis_url."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from carrier_cli.cluster.turn_wire import (
    QueuedTurn,
    ResultEntry,
    file_to_dict,
    result_from_dict,
    result_to_dict,
)
from carrier_cli.runtime.outgoing import (
    MAX_FILE_BYTES,
    MAX_FILES,
    Embed,
    EmbedField,
    OutgoingFile,
)
from carrier_cli.runtime.types import Addressing, IncomingMessage, TurnResult


def as_redis_returns(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_a_queued_turn_round_trips() -> None:
    message = IncomingMessage(
        text="héllo ✓",
        source="api",
        room_key="r1",
        sender_key="u1",
        sender_name="Ada",
        message_key="key\x1fidem",
        is_direct=True,
        attachments=[{"url": "https://example.com/a.png", "kind": "image"}],
        addressed=Addressing.DIRECT,
    )
    turn = QueuedTurn("req1", str(uuid.uuid4()), "carrier:inbox:p", True, message, deltas=False)
    back = QueuedTurn.parse(as_redis_returns(turn.fields()))
    assert back == turn
    assert back.message.addressed is Addressing.DIRECT


def test_a_result_round_trips() -> None:
    result = TurnResult(
        decision="DIRECT",
        message_id=uuid.uuid4(),
        text="hi",
        reply_id=uuid.uuid4(),
        actions=["REPLY"],
        thought="t",
        timings={"total": 0.5},
        extra_messages=["more"],
        replayed=True,
    )
    entry = ResultEntry("req1", "done", result_to_dict(result))
    parsed = ResultEntry.parse(as_redis_returns(entry.fields()))
    assert result_from_dict(parsed.data) == result


def test_a_results_files_and_embeds_round_trip_bounded() -> None:
    """The bytes travel base64 in the `done` entry (turn_wire.file_to_dict: why), at most
    MAX_FILES of MAX_FILE_BYTES: what the runtime never produces is dropped on arrival."""
    report = OutgoingFile("report.csv", bytes(range(256)), "text/csv", "Visits")
    card = Embed(
        title="T",
        description="D",
        url="https://e.x",
        color=0x112233,
        fields=(EmbedField("a", "1", inline=True),),
        footer="F",
        image_url="https://e.x/i.png",
    )
    result = TurnResult(
        decision="DIRECT", message_id=uuid.uuid4(), text="hi", files=[report], embeds=[card]
    )
    entry = ResultEntry("req1", "done", result_to_dict(result))
    back = result_from_dict(ResultEntry.parse(as_redis_returns(entry.fields())).data)
    assert back == result
    assert back.files[0].data == report.data and back.files[0].file_id == report.file_id

    data = result_to_dict(result)
    data["files"] = [file_to_dict(report)] * (MAX_FILES + 3)
    data["files"].append(file_to_dict(OutgoingFile("big.bin", b"x" * (MAX_FILE_BYTES + 1))))
    assert len(result_from_dict(data).files) == MAX_FILES
    data["files"] = [file_to_dict(OutgoingFile("big.bin", b"x" * (MAX_FILE_BYTES + 3)))]
    assert result_from_dict(data).files == []


@pytest.mark.parametrize(
    "fields",
    [{b"request": b"r"}, {b"request": b"r", b"agent": b"a", b"reply_to": b"i", b"message": b"[1]"}],
)
def test_an_unreadable_entry_is_a_value_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="unreadable queued turn"):
        QueuedTurn.parse(fields)


def test_nothing_loads_redis_without_redis_url() -> None:
    code = (
        "import sys\n"
        "import carrier_cli.cli.app, carrier_cli.cli.run, carrier_cli.cli.serve\n"
        "import carrier_cli.clients.api.server, carrier_cli.clients.api.app\n"
        "import carrier_cli.clients.api.routes.messages, carrier_cli.cluster.turn_wire\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
