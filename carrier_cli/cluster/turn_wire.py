"""What travels over Redis for a queued turn: the key names, the queued entry, and the
result entries a worker sends back to the API process waiting for them.

A queued entry is the turn's whole input (the `IncomingMessage` as JSON, the agent's id,
the request id and the waiting process's inbox), so any worker can run it with nothing
but the database. A result entry is one of `started` (a worker took the turn), `delta`
(reply text as it streams), `done` (the `TurnResult`, sent once the reply is stored, with
its files' bytes in base64: see `file_to_dict`) or
`error` (the JSON error the client gets: status, code, message, hint). Everything is
JSON in a `data` field, plus the request id, so one reader can route entries by request.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from carrier_cli.runtime.outgoing import (
    MAX_EMBEDS,
    MAX_FILE_BYTES,
    MAX_FILES,
    OutgoingFile,
    embed_from_json,
    embed_json,
)
from carrier_cli.runtime.types import Addressing, IncomingMessage, TurnResult

PREFIX = "carrier:"
GROUP = "turns"  # the consumer group every worker joins
VERSION = "1"


def turns_key(agent_id: uuid.UUID | str) -> str:
    """The stream of one agent's turns: a worker reads only the characters it serves."""
    return f"{PREFIX}turns:{agent_id}"


def inbox_key(process_id: str) -> str:
    """The stream one API process reads its turns' results from."""
    return f"{PREFIX}inbox:{process_id}"


def state_key(request_id: str) -> str:
    """`started` (a worker took it) or `abandoned` (the API gave up first): SET NX decides."""
    return f"{PREFIX}turn:{request_id}:state"


def message_to_json(message: IncomingMessage) -> str:
    data = asdict(message)
    if message.addressed is not None:
        data["addressed"] = message.addressed.value
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def message_from_json(text: str) -> IncomingMessage:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the queued message is not a JSON object")
    addressed = data.pop("addressed", None)
    message = IncomingMessage(**data)
    message.addressed = Addressing(addressed) if addressed is not None else None
    return message


def result_to_dict(result: TurnResult) -> dict[str, Any]:
    return {
        "decision": result.decision,
        "message_id": str(result.message_id),
        "text": result.text,
        "reply_id": str(result.reply_id) if result.reply_id is not None else None,
        "actions": list(result.actions),
        "thought": result.thought,
        "timings": dict(result.timings),
        "extra_messages": list(result.extra_messages),
        "replayed": result.replayed,
        "files": [file_to_dict(f) for f in result.files[:MAX_FILES]],
        "embeds": [embed_json(e) for e in result.embeds[:MAX_EMBEDS]],
    }


# A turn's files travel to the API process in its `done` entry, base64 in the JSON, not
# through a shared store: the bytes then sit in Redis only until that process reads its
# inbox (milliseconds; it trims what it read, and an inbox nobody reads expires in 10 min),
# where a store in Redis would hold every file for the whole retention (24 h by default)
# in memory that `noeviction` Redis (what the queue needs) would refuse writes past. The
# API process keeps them in its on-disk file store, as it does for turns it runs itself.
# Bounded: outgoing.MAX_FILES (10) files of MAX_FILE_BYTES (10 MiB), so one entry is at
# most ~134 MiB of base64, under Redis's 512 MB per value; a larger file or a file past
# the 10th is dropped on both sides (the runtime never produces one).
def file_to_dict(file: OutgoingFile) -> dict[str, Any]:
    return {
        "filename": file.filename,
        "content_type": file.content_type,
        "description": file.description,
        "data": base64.b64encode(file.data).decode("ascii"),
    }


def file_from_dict(data: dict[str, Any]) -> OutgoingFile | None:
    raw = str(data.get("data") or "")
    if len(raw) > (MAX_FILE_BYTES + 2) // 3 * 4:
        return None
    return OutgoingFile(
        filename=str(data["filename"]),
        data=base64.b64decode(raw, validate=True),
        content_type=data.get("content_type"),
        description=data.get("description"),
    )


def result_from_dict(data: dict[str, Any]) -> TurnResult:
    reply_id = data.get("reply_id")
    return TurnResult(
        decision=data["decision"],
        message_id=uuid.UUID(data["message_id"]),
        text=data.get("text"),
        reply_id=uuid.UUID(reply_id) if reply_id else None,
        actions=list(data.get("actions") or []),
        thought=data.get("thought"),
        timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
        extra_messages=list(data.get("extra_messages") or []),
        replayed=bool(data.get("replayed")),
        files=[
            f
            for f in (file_from_dict(item) for item in (data.get("files") or [])[:MAX_FILES])
            if f is not None
        ],
        embeds=[embed_from_json(e) for e in (data.get("embeds") or [])[:MAX_EMBEDS]],
    )


@dataclass
class QueuedTurn:
    """One entry of an agent's turn stream."""

    request_id: str
    agent_id: str
    reply_to: str  # the inbox stream of the API process waiting for the answer
    stream: bool  # the runtime streams the reply (its bus gets reply.token events)
    message: IncomingMessage
    deltas: bool = True  # with `stream`: also send the deltas back as `delta` entries

    def fields(self) -> dict[str, str]:
        return {
            "v": VERSION,
            "request": self.request_id,
            "agent": self.agent_id,
            "reply_to": self.reply_to,
            "stream": "1" if self.stream else "0",
            "deltas": "1" if self.deltas else "0",
            "message": message_to_json(self.message),
        }

    @classmethod
    def parse(cls, fields: dict[Any, Any]) -> QueuedTurn:
        """From XREADGROUP's fields (bytes); ValueError on an entry we cannot read."""
        text = {_text(k): _text(v) for k, v in fields.items()}
        try:
            return cls(
                request_id=text["request"],
                agent_id=text["agent"],
                reply_to=text["reply_to"],
                stream=text.get("stream") == "1",
                message=message_from_json(text["message"]),
                deltas=text.get("deltas", "1") == "1",
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable queued turn ({type(exc).__name__}: {exc})") from None


@dataclass
class ResultEntry:
    """One entry of an inbox: `kind` and its JSON `data`, for request `request_id`."""

    request_id: str
    kind: str  # started | delta | done | error
    data: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        return {
            "request": self.request_id,
            "kind": self.kind,
            "data": json.dumps(self.data, ensure_ascii=False, separators=(",", ":")),
        }

    @classmethod
    def parse(cls, fields: dict[Any, Any]) -> ResultEntry:
        text = {_text(k): _text(v) for k, v in fields.items()}
        try:
            data = json.loads(text.get("data") or "{}")
            return cls(request_id=text["request"], kind=text["kind"], data=dict(data))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable turn result ({type(exc).__name__}: {exc})") from None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
