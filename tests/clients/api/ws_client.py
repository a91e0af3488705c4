"""A small `websockets`-library client for the /v1/ws tests: connect, read JSON frames,
wait for a frame that matches."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


def ws_url(http_url: str, query: str = "") -> str:
    return http_url.replace("http://", "ws://") + "/v1/ws" + (f"?{query}" if query else "")


async def open_ws(
    http_url: str,
    key: str | None,
    *,
    query: str = "",
    first_frame_auth: bool = False,
    recv_buffer: int | None = None,
    **kwargs: Any,
) -> ClientConnection:
    """Connected (not yet past `authenticated`): the key as a subprotocol unless
    `first_frame_auth` (then the test sends the auth frame) or key is None."""
    if key is not None and not first_frame_auth:
        kwargs["subprotocols"] = ["carrier.v1", key]
    if recv_buffer is not None:  # a small receive window: a slow reader fills up fast
        parts = urlsplit(http_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        kwargs["sock"] = sock
    return await connect(ws_url(http_url, query), open_timeout=10, **kwargs)


async def authed(http_url: str, key: str | None, **kwargs: Any) -> ClientConnection:
    """Connected and authenticated (the `authenticated` frame read)."""
    ws = await open_ws(http_url, key, **kwargs)
    first = await recv(ws)
    assert first["type"] == "authenticated", first
    return ws


async def recv(ws: ClientConnection, timeout: float = 15) -> Frame:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    frame = json.loads(raw)
    assert isinstance(frame, dict)
    return frame


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(json.dumps(frame))


async def until(
    ws: ClientConnection, predicate: Callable[[Frame], bool], timeout: float = 20
) -> list[Frame]:
    """Every frame read up to and including the first that matches."""
    frames: list[Frame] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"no matching frame within {timeout}s; got {frames[-10:]}")
        frame = await recv(ws, left)
        frames.append(frame)
        if predicate(frame):
            return frames


async def subscribe(ws: ClientConnection, agent: str, room: str, since: str | None = None) -> Frame:
    frame: Frame = {"type": "subscribe", "agent": agent, "room": room}
    if since is not None:
        frame["since"] = since
    await send(ws, frame)
    got = await recv(ws)
    assert got["type"] == "subscribed", got
    return got


async def closed_code(ws: ClientConnection, timeout: float = 20) -> tuple[int | None, list[Frame]]:
    """Read until the server closes; (its close code, the frames read before)."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd is not None else None), frames
    except TimeoutError:
        kinds = [f.get("type") for f in frames[-5:]]
        raise AssertionError(
            f"not closed within {timeout}s, after {len(frames)} frames (last: {kinds})"
        ) from None


def completed_for(client_id: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == "reply.completed" and f.get("client_id") == client_id


def is_type(kind: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == kind
