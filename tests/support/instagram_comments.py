"""Comments, replies and rate-limit headers for the fake Graph API (instagram_servers.py).

What the real Graph API does and this fake does too:

* `GET /{media-id}/comments` lists top-level comments with the requested `fields`
  (`replies{...}` or `replies.limit(N){...}` expands the first page of each thread's
  replies, and only for comments that have some), paged with `limit` and an opaque
  `after` cursor, `paging.next` present only while more rows follow;
* `GET /{comment-id}/replies` lists a thread's replies the same way; `POST` with
  `message` creates one from the account itself (`from` = the account, its username);
  a reply to a reply is refused (threads are one level deep), and so is an empty or
  over-2,200-character message;
* `GET /{comment-id}` reads one comment;
* `comments_count` on the media counts comments and replies;
* every answer can carry `X-App-Usage` / `X-Business-Use-Case-Usage` headers
  (`set_usage`), and the throttling errors 4/17/32/613/80002 come with Meta's messages.

`add_comment` is how a test makes someone else comment; `reply_delay` holds the answer
to a reply POST after the reply exists (the window a kill -9 test aims at), and
`replied` is set each time a reply is created.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.instagram_servers import FakeGraph

THROTTLE_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80002: "(#80002) There have been too many calls to this Instagram account. "
    "Wait a bit and try again.",
}
MAX_COMMENT = 2_200


@dataclass
class FakeComment:
    id: str
    media_id: str
    text: str
    username: str
    user_id: str
    parent_id: str | None
    at: float
    hidden: bool = False


@dataclass
class FakeComments:
    graph: FakeGraph
    comments: dict[str, FakeComment] = field(default_factory=dict)
    reply_delay: float = 0.0
    replied: threading.Event = field(default_factory=threading.Event)
    usage_headers: dict[str, str] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(17900000000000001))
    _users: Any = field(default_factory=lambda: itertools.count(6000000000000001))

    # --- knobs -------------------------------------------------------------------------
    def add_post(self, caption: str = "A post") -> str:
        """A published post on the account (as if posted from the app)."""
        media_id = self.graph._new_id()
        self.graph.published.append(
            {
                "id": media_id,
                "container": None,
                "caption": caption,
                "media_type": "IMAGE",
                "permalink": f"https://www.instagram.com/p/C{media_id[-8:]}/",
                "at": time.time(),
            }
        )
        return media_id

    def add_comment(
        self,
        media_id: str,
        text: str,
        *,
        username: str = "sam.sails",
        user_id: str | None = None,
        parent_id: str | None = None,
    ) -> str:
        """Someone else comments (or replies, with `parent_id`) on a post."""
        comment_id = str(next(self._ids))
        self.comments[comment_id] = FakeComment(
            comment_id,
            media_id,
            text,
            username,
            user_id or str(next(self._users)),
            parent_id,
            time.time(),
        )
        return comment_id

    def replies_by_account(self, comment_id: str | None = None) -> list[FakeComment]:
        """The account's own replies (under one thread, or all)."""
        return [
            c
            for c in self.comments.values()
            if c.user_id == self.graph.account_id
            and (comment_id is None or c.parent_id == comment_id)
        ]

    def set_usage(
        self,
        *,
        app: float | None = None,
        business: float | None = None,
        regain_minutes: int = 0,
    ) -> None:
        """Usage headers on every answer from now on (percent of the hourly budget)."""
        headers: dict[str, str] = {}
        if app is not None:
            headers["X-App-Usage"] = json.dumps(
                {"call_count": app, "total_time": app / 2, "total_cputime": app / 3}
            )
        if business is not None:
            headers["X-Business-Use-Case-Usage"] = json.dumps(
                {
                    self.graph.account_id: [
                        {
                            "type": "instagram",
                            "call_count": business,
                            "total_cputime": business / 2,
                            "total_time": business / 2,
                            "estimated_time_to_regain_access": regain_minutes,
                        }
                    ]
                }
            )
        self.usage_headers = headers

    def throttle_next(self, endpoint: str, code: int = 4, *, times: int = 1) -> None:
        """The next call(s) to `endpoint` answer Meta's throttling error `code`."""
        self.graph.fail_next(
            endpoint,
            code,
            None,
            message=THROTTLE_MESSAGES[code],
            transient=True,
            times=times,
        )

    def count(self, media_id: str) -> int:
        return sum(1 for c in self.comments.values() if c.media_id == media_id)

    # --- server ------------------------------------------------------------------------
    def middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def usage(request: Any, handler: Any) -> Any:
            response = await handler(request)
            for name, value in self.usage_headers.items():
                response.headers[name] = value
            return response

        return usage

    def _row(self, comment: FakeComment, fields: str) -> dict[str, Any]:
        wanted = _top_fields(fields)
        row: dict[str, Any] = {"id": comment.id}
        values: dict[str, Any] = {
            "text": comment.text,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(comment.at)),
            "username": comment.username,
            "from": {"id": comment.user_id, "username": comment.username},
            "media": {"id": comment.media_id},
            "hidden": comment.hidden,
            "like_count": 0,
        }
        if comment.parent_id:
            values["parent_id"] = comment.parent_id
        for name in wanted:
            if name in values:
                row[name] = values[name]
        if "replies" in wanted:
            sub = _sub_fields(fields, "replies")
            children = self._children(comment.id)
            if children:  # Graph leaves out an expanded edge with no rows
                limit = int(_sub_limit(fields, "replies") or 25)
                row["replies"] = self._page(children, sub, limit, None, f"{comment.id}/replies")
        return row

    def _children(self, comment_id: str) -> list[FakeComment]:
        return sorted(
            (c for c in self.comments.values() if c.parent_id == comment_id), key=lambda c: c.at
        )

    def _page(
        self, items: list[FakeComment], fields: str, limit: int, after: str | None, path: str
    ) -> dict[str, Any]:
        start = int(base64.b64decode(after).decode()) if after else 0
        chunk = items[start : start + limit]
        body: dict[str, Any] = {"data": [self._row(c, fields) for c in chunk]}
        if chunk:
            cursors = {
                "before": base64.b64encode(str(start).encode()).decode(),
                "after": base64.b64encode(str(start + len(chunk)).encode()).decode(),
            }
            body["paging"] = {"cursors": cursors}
            if start + len(chunk) < len(items):
                body["paging"]["next"] = (
                    f"{self.graph.url}/v25.0/{path}?after={cursors['after']}&limit={limit}"
                )
        return body

    async def route(self, request: Any, node: str, edge: str | None, params: dict[str, str]) -> Any:
        """The answer for a comment endpoint, or None when the path is not one."""
        graph = self.graph
        fields = params.get("fields", "id,text,timestamp")
        limit = min(100, int(params.get("limit", "25")))
        if edge == "comments" and request.method == "GET" and graph.is_media(node):
            if (fail := graph._failure("comments")) is not None:
                return graph._json(fail[1], fail[0])
            top = sorted(
                (c for c in self.comments.values() if c.media_id == node and not c.parent_id),
                key=lambda c: c.at,
            )
            return graph._json(self._page(top, fields, limit, params.get("after"), edge))
        comment = self.comments.get(node)
        if comment is None:
            return None
        if edge is None and request.method == "GET":
            return graph._json(self._row(comment, fields))
        if edge != "replies":
            return None
        if request.method == "GET":
            if (fail := graph._failure("replies")) is not None:
                return graph._json(fail[1], fail[0])
            children = self._children(node)
            return graph._json(self._page(children, fields, limit, params.get("after"), edge))
        if (fail := graph._failure("post_reply")) is not None:
            return graph._json(fail[1], fail[0])
        caller = graph._caller(request, params) or graph.account_id
        return await self._post_reply(comment, params.get("message", ""), caller)

    async def _post_reply(self, comment: FakeComment, message: str, caller: str = "") -> Any:
        """The reply is the caller's: the account whose token posted it (one account per
        character), the main account by default."""
        from tests.support.instagram_servers import graph_error

        graph = self.graph
        if comment.parent_id:
            return graph._json(
                graph_error(100, 2534023, "Cannot reply to a reply; reply to the comment"),
                400,
            )
        if not message.strip() or len(message) > MAX_COMMENT:
            return graph._json(
                graph_error(100, None, "(#100) Param message must be 1 to 2200 characters"), 400
            )
        reply_id = self.add_comment(
            comment.media_id,
            message,
            username=graph.accounts[caller][1] if caller in graph.accounts else graph.username,
            user_id=caller or graph.account_id,
            parent_id=comment.id,
        )
        self.replied.set()
        deadline = time.monotonic() + self.reply_delay
        while self.reply_delay and time.monotonic() < deadline:  # setting it to 0 lets go
            await asyncio.sleep(0.05)
        return graph._json({"id": reply_id})


def _top_fields(fields: str) -> set[str]:
    """`id,text,replies.limit(5){id,text}` -> {id, text, replies}."""
    depth, current, names = 0, "", set()
    for char in fields + ",":
        if char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        elif char == "," and depth == 0:
            names.add(current.split(".", 1)[0].split("{", 1)[0].strip())
            current = ""
            continue
        current += char
    return {n for n in names if n}


def _sub_fields(fields: str, name: str) -> str:
    match = re.search(rf"{name}(?:\.limit\(\d+\))?\{{([^}}]*)\}}", fields)
    return match.group(1) if match else "id,text,timestamp"


def _sub_limit(fields: str, name: str) -> str | None:
    match = re.search(rf"{name}\.limit\((\d+)\)", fields)
    return match.group(1) if match else None
