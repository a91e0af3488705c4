"""`carrier instagram insights`: what each post achieved (reach, views, likes, comments,
saves, shares), from the Graph API's media insights.

The posts are the account's own media (`GET /{ig-user}/media`, newest first, at most
`MAX_POSTS`), or one post named by its journal id or its media id. Each one's lifetime
totals come from `GET /{media}/insights?metric=...`; stories have no likes, comments or
saves (Meta refuses those metrics for them), so they are asked only what they have. A post
whose insights Meta will not give (posted before the account became professional, or a
story older than 24 h) is listed with the reason instead of failing the whole report.

`views` is the metric Meta counts since v22 (it replaced impressions and plays); `saved`
is Meta's name for saves.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.instagram.graph import GraphClient, GraphError
from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.journal import Journal

log = logging.getLogger(__name__)

METRICS = ("reach", "views", "likes", "comments", "saved", "shares")
STORY_METRICS = ("reach", "views", "shares")
MAX_POSTS = 100  # two pages of the media edge; insights cost one call per post
PAGE_SIZE = 50
CONCURRENCY = 4  # insights calls in flight; Meta's app rate limit is per hour, not burst


@dataclass
class PostInsights:
    media_id: str
    caption: str
    media_type: str  # IMAGE, VIDEO, CAROUSEL_ALBUM, REELS / STORY (media_product_type)
    timestamp: datetime | None
    permalink: str | None
    metrics: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # why Meta gave no insights
    journal_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "media_id": self.media_id,
            "post_id": self.journal_id,
            "caption": self.caption,
            "media_type": self.media_type,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "permalink": self.permalink,
            "metrics": {name: self.metrics.get(name) for name in METRICS},
            "error": self.error,
        }


@dataclass
class DayTotals:
    day: date
    posts: int = 0
    metrics: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))


@dataclass
class InsightsReport:
    since: datetime
    posts: list[PostInsights]

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(p.metrics.get(name, 0) for p in self.posts) for name in METRICS}

    def days(self) -> list[DayTotals]:
        """Every day from the first post's day to today, with the totals of the posts
        published that day (days without a post are there, at zero, so the chart's
        gaps are real)."""
        dated = [p for p in self.posts if p.timestamp is not None]
        if not dated:
            return []
        first = min(p.timestamp.date() for p in dated if p.timestamp)
        last = max(datetime.now(UTC).date(), *(p.timestamp.date() for p in dated if p.timestamp))
        by_day: dict[date, DayTotals] = {}
        cursor = first
        while cursor <= last:
            by_day[cursor] = DayTotals(cursor)
            cursor += timedelta(days=1)
        for post in dated:
            assert post.timestamp is not None
            totals = by_day[post.timestamp.date()]
            totals.posts += 1
            for name, value in post.metrics.items():
                totals.metrics[name] = totals.metrics.get(name, 0) + value
        return list(by_day.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "posts": [p.to_dict() for p in self.posts],
            "totals": self.totals,
            "days": [
                {"day": d.day.isoformat(), "posts": d.posts, **d.metrics} for d in self.days()
            ],
        }


def _timestamp(text: Any) -> datetime | None:
    """Graph timestamps look like 2026-12-03T08:00:00+0000."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        return None


_MEDIA_FIELDS = "id,caption,media_type,media_product_type,timestamp,permalink"


def _post(row: dict[str, Any]) -> PostInsights:
    kind = str(row.get("media_product_type") or row.get("media_type") or "")
    if kind == "FEED":
        kind = str(row.get("media_type") or "FEED")
    return PostInsights(
        media_id=str(row["id"]),
        caption=str(row.get("caption") or ""),
        media_type=kind,
        timestamp=_timestamp(row.get("timestamp")),
        permalink=row.get("permalink"),
    )


async def recent_media(graph: GraphClient, since: datetime) -> list[PostInsights]:
    """The account's media published since `since`, newest first (bounded)."""
    posts: list[PostInsights] = []
    after: str | None = None
    while len(posts) < MAX_POSTS:
        params = {"fields": _MEDIA_FIELDS, "limit": str(PAGE_SIZE)}
        if after:
            params["after"] = after
        body = await graph.request(
            "GET", f"{graph.account_id}/media", params, what="Reading the account's media"
        )
        rows = [r for r in body.get("data") or [] if isinstance(r, dict) and r.get("id")]
        for row in rows:
            post = _post(row)
            if post.timestamp is not None and post.timestamp < since:
                return posts  # newest first: everything after this is older
            posts.append(post)
        after = ((body.get("paging") or {}).get("cursors") or {}).get("after")
        if not rows or not after or not (body.get("paging") or {}).get("next"):
            break
    return posts[:MAX_POSTS]


async def one_media(graph: GraphClient, media_id: str) -> PostInsights:
    body = await graph.request(
        "GET", media_id, {"fields": _MEDIA_FIELDS}, what=f"Reading media {media_id}"
    )
    return _post(body)


async def fill_metrics(graph: GraphClient, post: PostInsights) -> None:
    story = post.media_type == "STORY"
    metrics = STORY_METRICS if story else METRICS
    try:
        body = await graph.request(
            "GET",
            f"{post.media_id}/insights",
            {"metric": ",".join(metrics)},
            what=f"Reading the insights of media {post.media_id}",
        )
    except GraphError as exc:
        if exc.action in ("token", "stop", "retry"):
            raise  # the account or the network, not this post: the report would be wrong
        post.error = exc.raw_message or exc.message
        return
    for entry in body.get("data") or []:
        if not isinstance(entry, dict) or entry.get("name") not in METRICS:
            continue
        values = entry.get("values") or []
        total = entry.get("total_value") or {}
        value = values[0].get("value") if values and isinstance(values[0], dict) else None
        if value is None:
            value = total.get("value") if isinstance(total, dict) else None
        if isinstance(value, int):
            post.metrics[entry["name"]] = value


async def report(
    graph: GraphClient,
    *,
    since: datetime,
    post: str | None = None,
    journal: Journal | None = None,
) -> InsightsReport:
    """The report of one post (`post`: a journal id or a media id) or of the account's
    posts since `since`. Journal ids are matched to media ids where the journal has them."""
    known: dict[str, int] = {}
    if journal is not None:
        for record in await journal.history(limit=500, status="published"):
            if record.media_id:
                known[record.media_id] = record.id
    if post is not None:
        media_id = await _media_id(post, journal)
        posts = [await one_media(graph, media_id)]
    else:
        posts = await recent_media(graph, since)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(p: PostInsights) -> None:
        async with gate:
            await fill_metrics(graph, p)

    await asyncio.gather(*(one(p) for p in posts))
    for p in posts:
        p.journal_id = known.get(p.media_id)
    return InsightsReport(since=since, posts=posts)


async def _media_id(post: str, journal: Journal | None) -> str:
    """A journal id (small: `carrier instagram history` shows them) or a media id."""
    text = post.strip()
    if not text.isdigit():
        raise InputError(
            f"POST_ID {post!r}: give a journal id (`carrier instagram history`) or a media id.",
        )
    if journal is not None and len(text) < 10:
        record = await journal.get(int(text))
        if record is None:
            raise InputError(
                f"No Instagram post with id {text} in the journal.",
                hint="`carrier instagram history` lists them; a media id works too.",
            )
        if not record.media_id:
            raise InputError(
                f"Post {text} has no media id (status {record.status}): nothing to measure.",
                hint="Only published posts have insights.",
            )
        return record.media_id
    return text


def sparkline(values: list[int]) -> str:
    """One character per value, ▁ to █ scaled to the largest (a space for zero)."""
    blocks = "▁▂▃▄▅▆▇█"
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(" " if v <= 0 else blocks[min(7, int(v / top * 7.999))] for v in values)
