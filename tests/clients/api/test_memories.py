"""The memories endpoints: search (with scores), list with cursors, add a fact or a
document (admin only), delete by id (404 when absent)."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.chat_support import Served, model, served, unique

pytestmark = [pytest.mark.slow, pytest.mark.service]
__all__ = ["model", "served"]  # fixtures, used by name

AGENT = "/v1/agents/carrier"


def call(
    server: Served, method: str, path: str, scope: str = "admin", **kwargs: Any
) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}{AGENT}{path}",
        headers=server.headers(scope),
        timeout=60,
        **kwargs,
    )


def add(server: Served, **body: Any) -> dict[str, Any]:
    r = call(server, "POST", "/memories", json=body)
    assert r.status_code in (200, 201), r.text
    added: dict[str, Any] = r.json()
    return added


def search(server: Served, q: str, **params: Any) -> list[dict[str, Any]]:
    r = call(server, "GET", "/memories/search", scope="read", params={"q": q, **params})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits


def test_an_added_fact_is_found_by_search_with_a_score(served: Served) -> None:
    text = "Ada keeps three tortoises named after mathematicians."
    r = call(served, "POST", "/memories", json={"kind": "fact", "text": text})
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["created"] is True and added["memory"]["kind"] == "fact"
    hits = search(served, "Ada's tortoises", kind="fact")
    assert hits[0]["id"] == added["memory"]["id"] and hits[0]["text"] == text
    assert -1 <= hits[-1]["score"] <= hits[0]["score"] <= 1
    assert hits[0]["score"] > 0.3


def test_search_k_and_kind_filter(served: Served) -> None:
    for i in range(3):
        add(served, kind="lore", text=f"Lore number {i}: the lighthouse keeper's {i} cats.")
    hits = search(served, "lighthouse keeper cats", k=2, kind="lore")
    assert len(hits) == 2 and {h["kind"] for h in hits} == {"lore"}
    assert hits[0]["score"] >= hits[1]["score"]


def test_list_pages_follow_the_cursor(served: Served) -> None:
    room = unique("facts-room")
    r = httpx.post(
        f"{served.url}{AGENT}/messages",
        json={"room": room, "text": "make the room"},
        headers=served.headers(),
        timeout=60,
    )
    assert r.status_code == 200
    ids = [
        add(served, kind="fact", text=f"Fact {i} of the paged room.", room=room)["memory"]["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"kind": "fact", "room": room, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = call(served, "GET", "/memories", scope="read", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [m["id"] for m in page["memories"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first


def test_list_kind_filter_accepts_several(served: Served) -> None:
    r = call(served, "GET", "/memories", scope="read", params=[("kind", "fact"), ("kind", "lore")])
    assert r.status_code == 200
    assert {m["kind"] for m in r.json()["memories"]} <= {"fact", "lore"}
    r = call(served, "GET", "/memories", scope="read", params={"kind": "secrets"})
    assert r.status_code == 422 and "kind" in r.json()["error"]["message"]


def test_a_document_is_chunked_searchable_and_deleted_with_its_fragments(served: Served) -> None:
    text = "\n\n".join(
        f"Section {i}. The harbour ferry leaves at {6 + i} o'clock from pier {i}." * 8
        for i in range(6)
    )
    title = unique("Ferry timetable")
    body = {"kind": "document", "title": title, "text": text}
    first = call(served, "POST", "/memories", json=body)
    assert first.status_code == 201, first.text
    document = first.json()
    assert document["memory"]["kind"] == "document" and document["fragments"] >= 1
    again = call(served, "POST", "/memories", json=body)
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["memory"]["id"] == document["memory"]["id"]
    assert search(served, "when does the harbour ferry leave", kind="fragment")

    r = call(served, "DELETE", f"/memories/{document['memory']['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == 1 + document["fragments"]
    left = [
        h
        for h in search(served, "when does the harbour ferry leave", kind="fragment", k=50)
        if h["metadata"].get("document_id") == document["memory"]["id"]
    ]
    assert left == []


def test_delete_a_fact_then_it_is_gone(served: Served) -> None:
    memory = add(served, kind="fact", text=unique("A fact to forget"))["memory"]
    r = call(served, "DELETE", f"/memories/{memory['id']}")
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    r = call(served, "DELETE", f"/memories/{memory['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    listed = call(served, "GET", "/memories", scope="read", params={"kind": "fact", "limit": 200})
    assert memory["id"] not in {m["id"] for m in listed.json()["memories"]}


def test_delete_needs_a_full_id(served: Served) -> None:
    memory = add(served, kind="fact", text=unique("Prefix fact"))["memory"]
    r = call(served, "DELETE", f"/memories/{memory['id'][:8]}")
    assert r.status_code == 422 and "memory_id" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "fact", "text": ""}, "text"),
        ({"kind": "fact", "text": "  "}, "text"),
        ({"kind": "fact", "text": "x" * 8_001}, "text"),
        ({"kind": "document", "text": "x" * 500_001}, "text"),
        ({"kind": "secret", "text": "x"}, "kind"),
        ({"kind": "fact", "text": "x", "room": "no-such-room-here"}, None),
        ({"kind": "document", "text": "x", "room": "r1"}, "room"),
        ({"kind": "fact", "text": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_memory_bodies_are_refused(
    served: Served, body: dict[str, Any], field: str | None
) -> None:
    r = call(served, "POST", "/memories", json=body)
    if field is None:
        assert r.status_code == 404, r.text  # the room named does not exist
    else:
        assert r.status_code == 422, r.text
        assert field in r.json()["error"]["message"]


def test_writes_need_an_admin_key_reads_a_read_key(served: Served) -> None:
    for scope in ("read", "chat"):
        r = call(served, "POST", "/memories", scope=scope, json={"kind": "fact", "text": "no"})
        assert r.status_code == 403, r.text
        r = call(served, "DELETE", "/memories/00000000-0000-0000-0000-000000000000", scope=scope)
        assert r.status_code == 403
    assert call(served, "GET", "/memories", scope="read").status_code == 200
    found = call(served, "GET", "/memories/search", scope="read", params={"q": "x"})
    assert found.status_code == 200
    r = httpx.get(f"{served.url}{AGENT}/memories/search", params={"q": "x"}, timeout=30)
    assert r.status_code == 401


def test_search_needs_a_query(served: Served) -> None:
    r = call(served, "GET", "/memories/search", scope="read")
    assert r.status_code == 422 and "q" in r.json()["error"]["message"]
    r = call(served, "GET", "/memories/search", scope="read", params={"q": "x", "k": 101})
    assert r.status_code == 422 and "k" in r.json()["error"]["message"]
