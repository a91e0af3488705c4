"""Files and embeds a turn answers with, through a real `carrier serve`: the POST answer,
the SSE `reply` event and the WebSocket's `reply.completed` list them, and each file's
`url` downloads its exact bytes (read key, safe headers), until its retention is over.

The character loads tests/support/file_plugin.py; the fake model is scripted to choose
its SHOW_REPORT / SHOW_ODD action after REPLY.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from carrier_cli.runtime.outgoing import embed_json
from tests.clients.api.chat_support import Served, model, parse_sse, serving, unique
from tests.clients.api.ws_client import authed, send, until
from tests.support.file_plugin import CARD, ODD, REPORT, reply_choosing

pytestmark = [pytest.mark.slow, pytest.mark.service]
__all__ = ["model"]  # a fixture, used by name

AGENT = "/v1/agents/carrier"
PLUGIN_EXTRA = 'plugins: ["tests.support.file_plugin:PLUGIN"]\n'


@pytest.fixture(scope="module")
def files_served(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("serve-files"), model, character=PLUGIN_EXTRA) as s:
        yield s


def post(server: Served, action: str, **body: Any) -> httpx.Response:
    server.model.push(reply_choosing(action))
    return httpx.post(
        f"{server.url}{AGENT}/messages",
        json={"room": unique("files"), "text": "The report, please.", **body},
        headers=server.headers("chat"),
        timeout=60,
    )


def download(server: Served, url: str, scope: str | None = "read") -> httpx.Response:
    headers = server.headers(scope) if scope else {}
    return httpx.get(server.url + url, headers=headers, timeout=30)


def check_report(files: list[dict[str, Any]], embeds: list[dict[str, Any]], agent_id: str) -> str:
    """The SHOW_REPORT file's descriptor and card, as every client gets them: its url."""
    assert [(f["filename"], f["content_type"], f["size"], f["description"]) for f in files] == [
        ("report.csv", "text/csv", len(REPORT.data), "Visits per day")
    ]
    assert files[0]["id"] == REPORT.file_id
    assert files[0]["url"] == f"/v1/agents/{agent_id}/files/{REPORT.file_id}"
    assert embeds == [embed_json(CARD)]
    assert embeds[0]["fields"][0] == {"name": "mon", "value": "3", "inline": True}
    return str(files[0]["url"])


def agent_id(server: Served) -> str:
    r = httpx.get(f"{server.url}{AGENT}", headers=server.headers("read"), timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_the_answer_lists_the_files_and_embeds_and_the_url_gives_the_bytes(
    files_served: Served,
) -> None:
    r = post(files_served, "SHOW_REPORT")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["reply"]["actions"] == ["REPLY", "SHOW_REPORT"]
    url = check_report(answer["files"], answer["embeds"], agent_id(files_served))

    got = download(files_served, url)
    assert got.status_code == 200, got.text
    assert got.content == REPORT.data
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].startswith('attachment; filename="report.csv"')
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-length"] == str(len(REPORT.data))
    # by the agent's name too, and with a chat key (any key may read)
    by_name = download(files_served, f"{AGENT}/files/{REPORT.file_id}", "chat")
    assert by_name.content == REPORT.data


def test_a_download_needs_a_key_and_a_known_id(files_served: Served) -> None:
    r = post(files_served, "SHOW_REPORT")
    url = r.json()["files"][0]["url"]
    anonymous = download(files_served, url, None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"]
    for unknown in ("0" * 64, "not-an-id", REPORT.file_id[:-1] + "0"):
        missing = download(files_served, f"{AGENT}/files/{unknown}")
        assert missing.status_code == 404, missing.text
        error = missing.json()["error"]
        assert error["code"] == "not_found" and "files[].url" in error["hint"]
    other_agent = download(files_served, f"/v1/agents/nobody/files/{REPORT.file_id}")
    assert other_agent.status_code == 404


def test_an_odd_file_downloads_exactly_with_a_safe_name(files_served: Served) -> None:
    r = post(files_served, "SHOW_ODD")
    assert r.status_code == 200, r.text
    (file,) = r.json()["files"]
    assert file["filename"] == ODD.filename and file["content_type"] is None
    got = download(files_served, file["url"])
    assert got.content == ODD.data  # every byte value, not UTF-8
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["x-content-type-options"] == "nosniff"
    disposition = got.headers["content-disposition"]
    ascii_name = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_name == "r_sum_ _1_.bin"  # no path, no quote, ASCII only
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.bin" in disposition


def test_the_sse_reply_event_carries_files_and_embeds(files_served: Served) -> None:
    r = post(files_served, "SHOW_REPORT", stream=True)
    assert r.status_code == 200, r.text
    events = parse_sse(r.text).events
    assert [e.name for e in events][-2:] == ["reply", "done"]
    reply = events[-2].data
    url = check_report(reply["files"], reply["embeds"], agent_id(files_served))
    assert download(files_served, url).content == REPORT.data


async def test_the_websocket_reply_completed_carries_files_and_embeds(
    files_served: Served,
) -> None:
    files_served.model.push(reply_choosing("SHOW_REPORT"))
    ws = await authed(files_served.url, files_served.key("chat"))
    try:
        frame = {"type": "message", "agent": "Carrier", "room": unique("ws-files")}
        await send(ws, {**frame, "text": "The report, please.", "client_id": "f1"})
        frames = await until(ws, lambda f: f["type"] == "reply.completed")
        reply = frames[-1]["data"]["reply"]
        url = check_report(reply["files"], reply["embeds"], frames[-1]["agent_id"])
        # the bytes were stored before the frame was sent: downloadable at once
        got = download(files_served, url)
        assert got.status_code == 200 and got.content == REPORT.data
    finally:
        await ws.close()


def test_a_replay_in_the_same_process_lists_the_files_again(files_served: Served) -> None:
    """The process remembers its last results (runtime/turn/replay.py), files included; a
    replay from the database alone (another process) has none: memory keeps no bytes."""
    body = {"room": unique("replay"), "text": "The report, please."}
    files_served.model.push(reply_choosing("SHOW_REPORT"))
    headers = {**files_served.headers("chat"), "Idempotency-Key": unique("k")}
    first = httpx.post(f"{files_served.url}{AGENT}/messages", json=body, headers=headers)
    again = httpx.post(f"{files_served.url}{AGENT}/messages", json=body, headers=headers)
    assert again.json()["replayed"] is True
    assert again.json()["files"] == first.json()["files"] != []
    assert download(files_served, again.json()["files"][0]["url"]).content == REPORT.data


def test_an_expired_file_is_410_gone(model: Any, tmp_path: Path) -> None:
    retention_hours = 1.0 / 3600  # one second
    env = {"CARRIER_API_FILE_RETENTION_HOURS": str(retention_hours)}
    with serving(tmp_path, model, env, character=PLUGIN_EXTRA) as server:
        r = post(server, "SHOW_REPORT")
        url = r.json()["files"][0]["url"]
        time.sleep(1.5)
        gone = download(server, url)
        assert gone.status_code == 410, gone.text
        error = gone.json()["error"]
        assert error["code"] == "file_expired"
        assert "api_file_retention_hours" in error["hint"]
        # a new turn sending the same file stores it again
        again = post(server, "SHOW_REPORT")
        assert download(server, again.json()["files"][0]["url"]).content == REPORT.data
