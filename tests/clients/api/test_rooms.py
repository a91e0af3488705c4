"""GET /v1/agents/{agent}/rooms and /rooms/{room}/messages: listing, cursors, room by key
or id, and the message shape shared with the runtime's events."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.chat_support import Served, model, served, unique

pytestmark = [pytest.mark.slow, pytest.mark.service]
__all__ = ["model", "served"]  # fixtures, used by name

AGENT = "/v1/agents/carrier"


def get(server: Served, path: str, scope: str = "read", **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}{AGENT}{path}", params=params, headers=server.headers(scope), timeout=30
    )


def say(server: Served, room: str, text: str) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}{AGENT}/messages",
        json={"room": room, "text": text, "sender": {"id": "u1", "name": "Ada"}},
        headers=server.headers(),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture(scope="module")
def three_rooms(served: Served) -> list[dict[str, Any]]:
    """Three rooms, talked to in order (the last one is the most recent)."""
    return [say(served, unique("room"), f"hello {i}")["room"] for i in range(3)]


def test_rooms_are_listed_newest_activity_first(
    served: Served, three_rooms: list[dict[str, Any]]
) -> None:
    r = get(served, "/rooms")
    assert r.status_code == 200, r.text
    rooms = r.json()["rooms"]
    ids = [room["id"] for room in rooms]
    mine = [room["id"] for room in reversed(three_rooms)]
    assert [i for i in ids if i in mine] == mine
    first = next(room for room in rooms if room["id"] == three_rooms[0]["id"])
    assert first["source"] == "api" and first["key"] == three_rooms[0]["key"]
    assert first["last_active"]


def test_room_pages_follow_the_cursor_without_gaps_or_repeats(
    served: Served, three_rooms: list[dict[str, Any]]
) -> None:
    everything = [room["id"] for room in get(served, "/rooms", limit=200).json()["rooms"]]
    assert len(everything) >= 3
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = get(served, "/rooms", **params).json()
        assert len(page["rooms"]) == 1
        seen += [room["id"] for room in page["rooms"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == everything


def test_room_messages_paginate_newest_first(served: Served) -> None:
    room = unique("history")
    sent = [say(served, room, f"line {i}") for i in range(3)]
    expected = []  # newest first: reply 2, line 2, reply 1, ...
    for body in reversed(sent):
        expected += [body["reply"]["id"], body["message_id"]]
    pages: list[list[str]] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if before:
            params["before"] = before
        r = get(served, f"/rooms/{room}/messages", **params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append([m["id"] for m in page["messages"]])
        before = page["next"]
        if before is None:
            break
    assert [len(p) for p in pages] == [4, 2]
    assert [i for p in pages for i in p] == expected


def test_exactly_one_page_has_no_next(served: Served) -> None:
    room = unique("exact")
    say(served, room, "one and only")
    page = get(served, f"/rooms/{room}/messages", limit=2).json()
    assert len(page["messages"]) == 2 and page["next"] is None


def test_a_room_is_found_by_its_id_too(served: Served) -> None:
    room = unique("by-id")
    body = say(served, room, "find me by id")
    by_key = get(served, f"/rooms/{room}/messages").json()
    by_id = get(served, f"/rooms/{body['room']['id']}/messages").json()
    assert by_key == by_id
    assert by_id["room"] == {"id": body["room"]["id"], "key": room, "source": "api", "name": None}


def test_message_objects_have_the_event_shape(served: Served) -> None:
    room = unique("shape")
    body = say(served, room, "what shape are you?")
    incoming, reply = reversed(get(served, f"/rooms/{room}/messages").json()["messages"])
    keys = {
        "id",
        "text",
        "sender",
        "source",
        "actions",
        "in_reply_to",
        "attachments",
        "created",
    }
    assert set(incoming) == set(reply) == keys
    assert set(incoming["sender"]) == {"id", "key", "name", "agent"}
    assert incoming["id"] == body["message_id"] and incoming["in_reply_to"] is None
    assert reply["in_reply_to"] == body["message_id"] and reply["actions"] == ["REPLY"]
    assert reply["sender"]["name"] == "Carrier" and reply["sender"]["agent"] is True


def test_unknown_room_is_404(served: Served) -> None:
    r = get(served, "/rooms/never-used-room/messages")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = get(served, "/rooms/00000000-0000-0000-0000-000000000000/messages")
    assert r.status_code == 404


@pytest.mark.parametrize("cursor", ["not-a-cursor!", "bm9wZQ", "x" * 401])
def test_bad_room_cursor_is_422(served: Served, cursor: str) -> None:
    r = get(served, "/rooms", cursor=cursor)
    assert r.status_code == 422, r.text
    assert "cursor" in r.json()["error"]["message"]


def test_before_must_be_a_message_of_the_room(served: Served) -> None:
    one, other = unique("one"), unique("other")
    say(served, one, "in one")
    theirs = say(served, other, "in the other")
    r = get(served, f"/rooms/{one}/messages", before=theirs["message_id"])
    assert r.status_code == 422 and "before" in r.json()["error"]["message"]
    r = get(served, f"/rooms/{one}/messages", before="nope")
    assert r.status_code == 422 and "before" in r.json()["error"]["message"]


@pytest.mark.parametrize("limit", [0, 201, -1])
def test_limit_is_bounded(served: Served, limit: int) -> None:
    r = get(served, "/rooms", limit=limit)
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]


def test_rooms_need_a_key(served: Served) -> None:
    r = httpx.get(f"{served.url}{AGENT}/rooms", timeout=30)
    assert r.status_code == 401
