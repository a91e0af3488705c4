"""The Graph API's comment endpoints, as the comment replier reads and writes them.

* `GET /{ig-user-id}/media?fields=id,caption,timestamp,comments_count,permalink&limit=N`:
  the newest posts (newest first), each with its number of comments (replies included);
* `GET /{ig-media-id}/comments?fields=id,text,timestamp,username,from,parent_id,
  replies{...}&limit=50`: top-level comments, each with the first page of its replies
  expanded inline (one call per post instead of one per comment);
* `GET /{ig-comment-id}/replies?fields=...`: the rest of a thread, and the check after a
  crash whether our reply is already there;
* `POST /{ig-comment-id}/replies` `message=TEXT`: answer (Instagram threads are one level
  deep, so a reply to a reply goes to the thread's top-level comment).

Lists are paged with `paging.cursors.after` while `paging.next` is present, at most
`MAX_PAGES` pages of `PAGE_SIZE` (2,500 comments per post and poll), so a viral post costs
a bounded number of calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.graph import GraphClient

PAGE_SIZE = 50
MAX_PAGES = 50
MAX_COMMENT_CHARS = 2_200  # Instagram refuses longer comments
COMMENT_FIELDS = "id,text,timestamp,username,from,parent_id"
MEDIA_FIELDS = "id,caption,timestamp,comments_count,permalink"


@dataclass(frozen=True)
class Media:
    id: str
    caption: str = ""
    comments_count: int = 0
    permalink: str | None = None
    timestamp: str = ""


@dataclass(frozen=True)
class Comment:
    """A comment or a reply (`parent_id` set) on one of the account's posts."""

    id: str
    media_id: str
    text: str
    username: str
    from_id: str | None = None
    parent_id: str | None = None
    timestamp: str = ""

    @property
    def thread_id(self) -> str:
        """Where a reply to this comment goes: the top-level comment of its thread."""
        return self.parent_id or self.id


def comment_from(row: dict[str, Any], media_id: str, parent_id: str | None = None) -> Comment:
    """A Comment from a Graph (or webhook) row; `parent_id` for a reply listed under it."""
    raw_sender = row.get("from")
    sender: dict[str, Any] = raw_sender if isinstance(raw_sender, dict) else {}
    username = str(row.get("username") or sender.get("username") or "")
    parent = row.get("parent_id") or parent_id
    return Comment(
        id=str(row["id"]),
        media_id=media_id,
        text=str(row.get("text") or ""),
        username=username,
        from_id=str(sender["id"]) if sender.get("id") else None,
        parent_id=str(parent) if parent and str(parent) != str(row["id"]) else None,
        timestamp=str(row.get("timestamp") or ""),
    )


def _next_after(body: dict[str, Any]) -> str | None:
    paging = body.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    return str(after) if after else None


async def _pages(
    graph: GraphClient,
    path: str,
    params: dict[str, str],
    *,
    what: str,
    first: dict[str, Any] | None = None,
    max_pages: int = MAX_PAGES,
) -> AsyncIterator[dict[str, Any]]:
    """The rows of a paged edge; `first` is a page already in hand (an expanded field)."""
    body = first
    after: str | None = None
    for page in range(max_pages):
        if body is None or page > 0:
            query = dict(params)
            if after:
                query["after"] = after
            body = await graph.request("GET", path, query, what=what)
        data = body.get("data")
        for row in data if isinstance(data, list) else []:
            if isinstance(row, dict) and row.get("id"):
                yield row
        after = _next_after(body)
        if after is None:
            return


async def recent_media(graph: GraphClient, limit: int) -> list[Media]:
    """The account's `limit` newest posts (one call: limit is at most 100)."""
    body = await graph.request(
        "GET",
        f"{graph.account_id}/media",
        {"fields": MEDIA_FIELDS, "limit": str(limit)},
        what="Reading the recent posts",
    )
    rows = body.get("data")
    media = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or not row.get("id"):
            continue
        try:
            count = int(row.get("comments_count") or 0)
        except (TypeError, ValueError):
            count = 0
        media.append(
            Media(
                id=str(row["id"]),
                caption=str(row.get("caption") or ""),
                comments_count=count,
                permalink=str(row["permalink"]) if row.get("permalink") else None,
                timestamp=str(row.get("timestamp") or ""),
            )
        )
    return media[:limit]


async def replies(
    graph: GraphClient,
    comment_id: str,
    media_id: str,
    *,
    first: dict[str, Any] | None = None,
) -> list[Comment]:
    """Every reply of a top-level comment (`first`: the expanded first page, if any)."""
    found = []
    async for row in _pages(
        graph,
        f"{comment_id}/replies",
        {"fields": COMMENT_FIELDS, "limit": str(PAGE_SIZE)},
        what=f"Reading the replies to comment {comment_id}",
        first=first,
    ):
        found.append(comment_from(row, media_id, comment_id))
    return found


async def media_comments(graph: GraphClient, media_id: str) -> list[Comment]:
    """A post's comments and their replies, oldest thread first as Instagram lists them."""
    found: list[Comment] = []
    fields = f"{COMMENT_FIELDS},replies.limit({PAGE_SIZE}){{{COMMENT_FIELDS}}}"
    async for row in _pages(
        graph,
        f"{media_id}/comments",
        {"fields": fields, "limit": str(PAGE_SIZE)},
        what=f"Reading the comments of post {media_id}",
    ):
        top = comment_from(row, media_id)
        found.append(top)
        inline = row.get("replies")
        if isinstance(inline, dict):
            found.extend(await replies(graph, top.id, media_id, first=inline))
    return found


async def post_reply(graph: GraphClient, comment_id: str, message: str) -> str:
    """Answer a top-level comment; returns the new reply's id."""
    body = await graph.request(
        "POST",
        f"{comment_id}/replies",
        {"message": message[:MAX_COMMENT_CHARS]},
        what=f"Replying to comment {comment_id}",
    )
    return str(body["id"])
