"""The request and response models of POST /v1/agents/{agent}/messages, with the bounds
a caller can rely on (and /docs shows): room 1-200 printable characters, text up to
32,000 characters, at most 10 attachments, each a URL reference and never the bytes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carrier_cli.clients.api.routes.shapes import RoomRef

MAX_TEXT = 32_000
MAX_ROOM = 200
MAX_ATTACHMENTS = 10
# What the schema says of the text fields (the validators below are the last word: they
# also refuse blank values and the rest of what str.isprintable refuses).
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]+$"
NOT_BLANK = r"\S"


def _printable(value: Any, field: str) -> Any:
    """Run before the schema's pattern, so the error says what is wrong in words."""
    if not isinstance(value, str):
        return value  # the type check that follows names it
    if not value.strip():
        raise ValueError(f"{field} must not be blank")
    if not value.isprintable():
        raise ValueError(f"{field} must not contain control characters (newlines, tabs...)")
    return value


class Sender(BaseModel):
    """Who wrote the message; without it, the API key's name is the sender."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=PRINTABLE,
        description="Your application's id of the person (1-200 printable characters). "
        "The same id is the same person for the agent's memory of facts.",
        examples=["u1"],
    )
    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=PRINTABLE,
        description="How the agent should call them (1-100 printable characters).",
        examples=["Ada"],
    )

    @field_validator("id", "name", mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _printable(value, "it")


class Attachment(BaseModel):
    """A reference to media, by URL: the agent sees its kind, name and URL, never bytes."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://[^\s]+$",
        description="An http(s) URL (no data: URLs; upload media elsewhere).",
        examples=["https://example.com/cat.jpg"],
    )
    kind: Literal["image", "video", "audio", "file", "link"] = "file"
    name: str | None = Field(None, max_length=200, pattern=PRINTABLE, examples=["cat.jpg"])

    @field_validator("name", mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return None if value is None else _printable(value, "it")


class MessageIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"room": "r1", "text": "Hello!", "sender": {"id": "u1", "name": "Ada"}},
                {"room": "r1", "text": "Tell me a story.", "stream": True},
            ]
        },
    )

    room: str = Field(
        min_length=1,
        max_length=MAX_ROOM,
        pattern=PRINTABLE,
        description="Your name for the conversation (1-200 printable characters). Messages "
        "to the same room share the agent's recent context and are answered in order.",
        examples=["r1"],
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT,
        pattern=NOT_BLANK,
        description=f"The message (1-{MAX_TEXT:,} characters; not blank).",
        examples=["Hello!"],
    )
    sender: Sender | None = Field(None, description="Default: the API key's name.")
    attachments: list[Attachment] = Field(
        default_factory=list, max_length=MAX_ATTACHMENTS, description="At most 10."
    )
    stream: bool = Field(
        False,
        description="Answer with Server-Sent Events (`token`..., `reply`, `done`); the same "
        "as sending `Accept: text/event-stream`.",
    )

    @field_validator("room", mode="before")
    @classmethod
    def _room(cls, value: Any) -> Any:
        return _printable(value, "room")

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str) and value and not value.strip():
            raise ValueError("text must not be blank")
        return value


class ReplyOut(BaseModel):
    id: str = Field(description="The reply's memory id.")
    text: str
    actions: list[str] = Field(description="The actions the agent chose (e.g. REPLY).")
    thought: str | None = Field(None, description="The agent's stated reasoning, if any.")


class FileOut(BaseModel):
    """A file the reply sent: its description, and where to download the bytes."""

    id: str = Field(description="The file's content address (sha256, 64 hex digits).")
    filename: str
    content_type: str | None = Field(None, description="Its MIME type, when the plugin gave one.")
    size: int = Field(description="Bytes.")
    description: str | None = Field(None, description="Alt text, when the plugin gave one.")
    url: str = Field(
        description="GET it (read scope) for the bytes, within api_file_retention_hours "
        "(default 24 h; then 410). Relative to the API's base URL."
    )


class EmbedFieldOut(BaseModel):
    name: str
    value: str
    inline: bool = False


class EmbedOut(BaseModel):
    """A card the reply sent (what Discord shows as an embed)."""

    title: str | None = None
    description: str | None = None
    url: str | None = None
    color: int | None = Field(None, description="0xRRGGBB as an integer.")
    fields: list[EmbedFieldOut] = Field(default_factory=list)
    footer: str | None = None
    image_url: str | None = None


_FILE_ID = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
FILE_EXAMPLE: dict[str, Any] = {
    "id": _FILE_ID,
    "filename": "report.csv",
    "content_type": "text/csv",
    "size": 18,
    "description": "Visits per day",
    "url": f"/v1/agents/Carrier/files/{_FILE_ID}",
}


class MessageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message_id": "9e8d7c6b-5a4f-5e3d-8c2b-1a0f9e8d7c6b",
                    "room": {
                        "id": "0b4e5b0e-2f5c-5d43-9a4e-6c1d9c1f2b7a",
                        "key": "r1",
                        "source": "api",
                        "name": None,
                    },
                    "reply": {
                        "id": "5a0c8f4e-3f0b-5a8e-8d0e-9a3f5e6b7c21",
                        "text": "Hello Ada! What can I do for you?",
                        "actions": ["REPLY"],
                        "thought": "A greeting; greet back.",
                    },
                    "extra_messages": [],
                    "files": [FILE_EXAMPLE],
                    "embeds": [
                        {
                            "title": "Visits",
                            "description": "This week",
                            "url": None,
                            "color": 3447003,
                            "fields": [{"name": "mon", "value": "3", "inline": True}],
                            "footer": None,
                            "image_url": None,
                        }
                    ],
                    "decision": "DIRECT",
                    "replayed": False,
                    "timings": {"intake": 4.1, "model": 812.5, "total": 830.2},
                }
            ]
        }
    )

    message_id: str = Field(description="The stored incoming message's memory id.")
    room: RoomRef
    reply: ReplyOut | None = Field(
        description="The agent's reply; null when it chose not to answer (the room was "
        "told to stop, or the model answered with no text)."
    )
    extra_messages: list[str] = Field(
        description="Messages the agent's actions sent after the reply, in order."
    )
    files: list[FileOut] = Field(
        default_factory=list,
        description="Files the agent's actions sent with the reply (at most 10 of 10 MiB); "
        "download each from its `url`. A replay lists them while the process that ran the "
        "turn remembers it (its last 2,048 turns); else none (memory keeps no bytes).",
    )
    embeds: list[EmbedOut] = Field(
        default_factory=list, description="Cards the agent's actions sent with the reply."
    )
    decision: str = Field(description="DIRECT for API messages; STOP/IGNORE: no reply.")
    replayed: bool = Field(
        description="True when this is the stored answer to an earlier request with the "
        "same Idempotency-Key (no new generation)."
    )
    timings: dict[str, float] = Field(description="Milliseconds per stage of the turn.")


# One Server-Sent Event (OpenAPI 3.1: `schema` of an event stream describes each event).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "description": "1, 2, 3... within the response."},
        "event": {"type": "string", "enum": ["token", "reply", "done", "error"]},
        "data": {
            "type": "string",
            "description": 'JSON: token {"text"}, reply (the JSON answer), done {}, error '
            '{"error": {"code", "message", "hint"}}.',
        },
    },
}
