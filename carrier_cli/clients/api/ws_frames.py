"""The frames a WebSocket client may send, validated with pydantic, and the error frame.

A bad frame never closes the connection: `parse` turns invalid JSON, an unknown `type`,
a missing or malformed field into a `FrameError` naming the field, which the session
answers with an `error` frame (and the `client_id` of the frame, when it had one).
The limits match the REST API's (routes/messages.py): a room key of 1-200 printable
characters, a text of 1-32,000 characters.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carrier_cli.redact import scrub

MAX_FRAME_CHARS = 262_144  # a message frame's text is at most 32,000 characters
MAX_TEXT_CHARS = 32_000

Ref = Annotated[str, Field(min_length=1, max_length=200)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _RoomFrame(_Frame):
    agent: Ref = Field(description="The character's name or id.")
    room: Ref = Field(description="An API room key (e.g. r1) or a room id (any source).")

    @field_validator("room")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or not value.strip():
            raise ValueError("must be printable characters, not blank")
        return value


class AuthFrame(_Frame):
    type: Literal["auth"]
    key: str = Field(min_length=1, max_length=512)


class SubscribeFrame(_RoomFrame):
    type: Literal["subscribe"]
    since: str | None = Field(
        default=None,
        max_length=64,
        description="The id of the last message.created event seen: replays what came after.",
    )


class UnsubscribeFrame(_RoomFrame):
    type: Literal["unsubscribe"]


class Sender(_Frame):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = Field(default=None, min_length=1, max_length=100)


class MessageFrame(_RoomFrame):
    type: Literal["message"]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    sender: Sender | None = None
    client_id: str | None = Field(default=None, max_length=200)


class PingFrame(_Frame):
    type: Literal["ping"]
    id: str | int | None = None


ClientFrame = AuthFrame | SubscribeFrame | UnsubscribeFrame | MessageFrame | PingFrame
_TYPES: dict[str, type[_Frame]] = {
    "auth": AuthFrame,
    "subscribe": SubscribeFrame,
    "unsubscribe": UnsubscribeFrame,
    "message": MessageFrame,
    "ping": PingFrame,
}


class FrameError(Exception):
    """What was wrong with a frame; becomes an `error` frame."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        client_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.client_id = client_id
        self.hint = hint

    def frame(self) -> dict[str, Any]:
        return error_frame(
            self.code, self.message, field=self.field, client_id=self.client_id, hint=self.hint
        )


def error_frame(
    code: str,
    message: str,
    *,
    field: str | None = None,
    client_id: str | None = None,
    hint: str | None = None,
) -> dict[str, Any]:
    """`{"type": "error", "code", "message", "field"?, "hint"?, "client_id"?}`; the text
    is scrubbed of anything that looks like a secret."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": scrub(message)}
    if field is not None:
        frame["field"] = field
    if hint is not None:
        frame["hint"] = scrub(hint)
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


def parse(text: str) -> ClientFrame:
    """One client frame, or FrameError."""
    if len(text) > MAX_FRAME_CHARS:
        raise FrameError(
            "frame_too_large",
            f"A frame is at most {MAX_FRAME_CHARS} characters.",
            hint=f"A message text is at most {MAX_TEXT_CHARS} characters.",
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(
            "invalid_json",
            f"The frame is not JSON ({exc.msg} at character {exc.pos}).",
            hint='Send one JSON object per frame, e.g. {"type": "ping"}.',
        ) from None
    except (ValueError, RecursionError):  # a 5,000-digit number, nesting too deep
        raise FrameError(
            "invalid_json",
            "The frame is JSON this server does not read (a number too long, or nesting too deep).",
        ) from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "A frame is a JSON object with a `type`.", field="type")
    client_id = data.get("client_id") if isinstance(data.get("client_id"), str) else None
    kind = data.get("type")
    model = _TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(_TYPES)
        what = "has no `type`" if kind is None else f"has an unknown type {str(kind)[:40]!r}"
        raise FrameError(
            "invalid_frame",
            f"The frame {what}.",
            field="type",
            client_id=client_id,
            hint=f"`type` is one of: {known}.",
        )
    try:
        frame = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "type"
        raise FrameError(
            "invalid_frame",
            f"Frame field `{loc}`: {first.get('msg', 'invalid')}.",
            field=loc,
            client_id=client_id,
            hint=f"Fix `{loc}` and send the {kind} frame again.",
        ) from None
    assert isinstance(
        frame, AuthFrame | SubscribeFrame | UnsubscribeFrame | MessageFrame | PingFrame
    )
    return frame
