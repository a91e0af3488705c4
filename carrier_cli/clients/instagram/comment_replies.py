"""The agent answers comments: poll the recent posts, run each new comment through the
runtime, reply once.

`run_comment_replies` (started by `carrier run|serve --client instagram` for a character
with `clients.instagram.reply_to_comments: true`) polls the `instagram_comment_media`
newest posts every `instagram_comment_poll_interval` seconds and takes the comments Meta's
webhooks hand over (comment_inbox.py) in between. Each comment is one message in a room
per post (`room_key` the media id), through `AgentRuntime.handle_message` like any other
client's message.

Exactly once, with the row of memory/comment_replies.py keyed by the comment id:

1. claim the row (a comment another live process holds, or one done with, is left alone);
2. if an earlier attempt stored a reply text, look for that text from the account among
   the thread's replies on Instagram: found means the process died after posting and
   before recording, so record it and post nothing;
3. the character's rules (keywords, mentions only, max replies per hour);
4. the turn; its reply text is stored on the row *before* `POST /{comment}/replies`;
5. post, record `replied` with the reply's id.

The account's own comments and replies are never answered (by id and by username), so the
agent never talks to itself. Failures are retried on later polls, `MAX_ATTEMPTS` in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.instagram import comment_inbox
from carrier_cli.clients.instagram import comments as graph_comments
from carrier_cli.clients.instagram.comments import Comment, Media
from carrier_cli.clients.instagram.graph import GraphClient, GraphError
from carrier_cli.errors import CarrierError
from carrier_cli.memory import comment_replies as rows

if TYPE_CHECKING:
    from carrier_cli.character.model import InstagramClientSettings
    from carrier_cli.clients.instagram.options import CommentOptions
    from carrier_cli.runtime.types import IncomingMessage, TurnResult

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # turns or posts that failed before a comment is given up (`failed`)
# A claim lasts longer than any turn (model timeouts are 60 s by default, with retries);
# a process that died on this host loses its claims at once anyway.
LEASE = timedelta(minutes=15)
FULL_SCAN_EVERY = 10  # polls; between them a post whose comment count is unchanged is skipped
# Gone comments: Graph answers code 100 (object does not exist / cannot be loaded).
_GONE_CODES = {100}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Rules:
    """The character's should-respond rules for comments (clients.instagram.*)."""

    keywords: tuple[str, ...] = ()
    mentions_only: bool = False
    max_per_hour: int = 30

    @classmethod
    def of(cls, config: InstagramClientSettings) -> Rules:
        return cls(
            keywords=tuple(k.strip() for k in config.comment_keywords if k.strip()),
            mentions_only=config.comment_mentions_only,
            max_per_hour=config.max_replies_per_hour,
        )


def mentions(text: str, username: str) -> bool:
    """`@username` as a whole handle (Instagram handles: letters, digits, `.` and `_`)."""
    if not username:
        return False
    pattern = rf"(?<![\w@.])@{re.escape(username)}(?![\w.])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def has_keyword(text: str, keywords: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text, re.IGNORECASE) for k in keywords)


def rule_refusal(comment: Comment, rules: Rules, username: str) -> str | None:
    """Why the rules say no to this comment, or None (answer it)."""
    if rules.keywords and not has_keyword(comment.text, rules.keywords):
        return "no keyword (clients.instagram.comment_keywords)"
    if rules.mentions_only and not mentions(comment.text, username):
        return f"does not mention @{username} (clients.instagram.comment_mentions_only)"
    return None


@dataclass
class Account:
    """Who "we" are on Instagram: the agent's own comments are recognised by these."""

    id: str
    username: str

    def wrote(self, comment: Comment) -> bool:
        if comment.from_id and comment.from_id == self.id:
            return True
        return bool(self.username) and comment.username.casefold() == self.username.casefold()


@dataclass
class Outcome:
    comment_id: str
    status: str  # replied, recovered, skipped, own, done, busy, deferred, failed, retry
    detail: str = ""
    reply_id: str | None = None


@dataclass
class CommentReplier:
    """Answers comments for one character on one account (one per running client)."""

    runtime: Any  # AgentRuntime: .character, .store, .handle_message
    graph: GraphClient
    account: Account
    owner: str
    rules: Rules
    captions: dict[str, Media] = field(default_factory=dict)  # media id -> post (room names)
    # One comment at a time per character: the poller and the webhooks meet here, and
    # replies in a thread go out in the order the comments came.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def character(self) -> str:
        return str(self.runtime.character.name)

    async def handle(self, comment: Comment) -> Outcome:
        """Take one comment through the exactly-once path (see the module docstring)."""
        if self.account.wrote(comment):
            return Outcome(comment.id, "own", "written by the account itself")
        async with self._lock:
            return await self._handle(comment)

    async def _handle(self, comment: Comment) -> Outcome:
        from carrier_cli.clients.instagram.journal import _owner_is_dead

        store = self.runtime.store
        claim = await rows.claim(
            store,
            comment_id=comment.id,
            account_id=self.account.id,
            media_id=comment.media_id,
            parent_id=comment.parent_id,
            character=self.character,
            owner=self.owner,
            now=_now(),
            lease=LEASE,
            owner_is_dead=_owner_is_dead,
        )
        if not claim.owned:
            status = "done" if claim.row.final else "busy"
            return Outcome(comment.id, status, claim.row.status, claim.row.reply_id)
        if claim.existed and claim.row.reply_text:
            try:
                found = await self._our_reply(comment, claim.row.reply_text)
            except GraphError as exc:
                return await self._give_back(comment, f"checking for an earlier reply: {exc}")
            if found is not None:
                await rows.finish(
                    store, comment.id, self.owner, status="replied", now=_now(), reply_id=found
                )
                log.info(
                    "Instagram: comment %s was already answered (reply %s) before a restart; "
                    "recorded, not posted again",
                    comment.id,
                    found,
                )
                return Outcome(comment.id, "recovered", reply_id=found)
        refusal = rule_refusal(comment, self.rules, self.account.username)
        if refusal is not None:
            await rows.finish(
                store, comment.id, self.owner, status="skipped", now=_now(), reason=refusal
            )
            return Outcome(comment.id, "skipped", refusal)
        if self.rules.max_per_hour <= 0:
            reason = "max_replies_per_hour is 0 (clients.instagram)"
            await rows.finish(
                store, comment.id, self.owner, status="skipped", now=_now(), reason=reason
            )
            return Outcome(comment.id, "skipped", reason)
        hour_ago = _now() - timedelta(hours=1)
        if await rows.replies_since(store, self.character, hour_ago) >= self.rules.max_per_hour:
            # Not dropped: the comment is answered by a later poll once the hour allows.
            await rows.release(
                store,
                comment.id,
                self.owner,
                now=_now(),
                reason=f"waiting: max_replies_per_hour ({self.rules.max_per_hour}) reached",
            )
            return Outcome(comment.id, "deferred", "max_replies_per_hour reached")
        return await self._answer(comment, claim.row.reply_text)

    async def _answer(self, comment: Comment, stored_text: str | None) -> Outcome:
        store = self.runtime.store
        text = stored_text
        if not text:
            try:
                result = await self._turn(comment)
            except Exception as exc:  # any failure: the claim goes back, bounded by attempts
                if not isinstance(exc, CarrierError):
                    log.exception("Instagram: the turn for comment %s failed", comment.id)
                return await self._give_back(comment, f"the turn failed: {exc}")
            if not result.text or not result.text.strip():
                await rows.finish(
                    store,
                    comment.id,
                    self.owner,
                    status="skipped",
                    now=_now(),
                    reason=f"the agent chose not to answer ({result.decision})",
                )
                return Outcome(comment.id, "skipped", f"not answered ({result.decision})")
            text = self._reply_text(comment, result.text)
            if not await rows.save_text(store, comment.id, self.owner, text, _now()):
                return Outcome(comment.id, "busy", "claim lost to another process")
        try:
            reply_id = await graph_comments.post_reply(self.graph, comment.thread_id, text)
        except GraphError as exc:
            if exc.code in _GONE_CODES:
                await rows.finish(
                    store,
                    comment.id,
                    self.owner,
                    status="failed",
                    now=_now(),
                    reason=f"the comment is gone: {exc.message}",
                )
                return Outcome(comment.id, "failed", exc.message)
            return await self._give_back(comment, f"posting the reply: {exc}")
        # The window: posted on Instagram, not yet recorded. A crash here is closed by step
        # 2 of the next attempt (the stored text, found among the thread's replies).
        await rows.finish(
            store, comment.id, self.owner, status="replied", now=_now(), reply_id=reply_id
        )
        log.info(
            "Instagram[%s]: replied to %s's comment %s on post %s (reply %s)",
            self.character,
            comment.username,
            comment.id,
            comment.media_id,
            reply_id,
        )
        return Outcome(comment.id, "replied", reply_id=reply_id)

    async def _give_back(self, comment: Comment, reason: str) -> Outcome:
        status = await rows.give_back(
            self.runtime.store,
            comment.id,
            self.owner,
            now=_now(),
            reason=reason,
            max_attempts=MAX_ATTEMPTS,
        )
        log.warning(
            "Instagram: comment %s: %s (%s)",
            comment.id,
            reason,
            "given up" if status == "failed" else "retried on a later poll",
        )
        return Outcome(comment.id, "failed" if status == "failed" else "retry", reason)

    async def _our_reply(self, comment: Comment, text: str) -> str | None:
        """The id of a reply with this text from the account in the comment's thread."""
        wanted = " ".join(text.split())
        thread = await graph_comments.replies(self.graph, comment.thread_id, comment.media_id)
        for reply in thread:
            if self.account.wrote(reply) and " ".join(reply.text.split()) == wanted:
                return reply.id
        return None

    def _reply_text(self, comment: Comment, text: str) -> str:
        """A reply in a thread names who it answers, as people do on Instagram."""
        text = text.strip()
        if comment.parent_id and comment.username:
            handle = f"@{comment.username}"
            if not text.casefold().startswith(handle.casefold()):
                text = f"{handle} {text}"
        return text[: graph_comments.MAX_COMMENT_CHARS]

    async def _turn(self, comment: Comment) -> TurnResult:
        result: TurnResult = await self.runtime.handle_message(self.message(comment))
        return result

    def message(self, comment: Comment) -> IncomingMessage:
        from carrier_cli.runtime.types import Addressing, IncomingMessage

        media = self.captions.get(comment.media_id)
        caption = " ".join((media.caption if media else "").split())
        room_name = (
            f"Instagram post {media.permalink if media and media.permalink else comment.media_id}"
        )
        if caption:
            room_name += f": {caption[:80]}"
        mentioned = mentions(comment.text, self.account.username)
        # A comment on the account's own post speaks to the account; in a thread, only a
        # mention does for sure, the rest is the runtime's (or the small model's) call.
        how = (
            Addressing.DIRECT
            if comment.parent_id is None
            else (Addressing.MENTION if mentioned else None)
        )
        return IncomingMessage(
            text=comment.text,
            source="instagram",
            room_key=f"media:{comment.media_id}",
            sender_key=comment.from_id or f"username:{comment.username}",
            sender_name=comment.username or "someone",
            message_key=f"comment:{comment.id}",
            room_name=room_name[:200],
            is_direct=how is Addressing.DIRECT,
            mentions_agent=mentioned,
            addressed=how,
            metadata={
                "instagram": {
                    "media_id": comment.media_id,
                    "comment_id": comment.id,
                    "parent_id": comment.parent_id,
                    "username": comment.username,
                    "caption": caption[:500],
                },
                "sender_names": [comment.username] if comment.username else [],
            },
        )


@dataclass
class PollStats:
    media: int = 0
    comments: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class CommentPoller:
    """One poll: the newest posts, their comments, each new one through the replier."""

    def __init__(self, replier: CommentReplier, media_count: int) -> None:
        self.replier = replier
        self.media_count = media_count
        self._counts: dict[str, int] = {}  # media id -> comments_count at the last full read
        self._polls = 0

    async def poll(self) -> PollStats:
        stats = PollStats()
        graph = self.replier.graph
        full = self._polls % FULL_SCAN_EVERY == 0
        self._polls += 1
        for media in await graph_comments.recent_media(graph, self.media_count):
            self.replier.captions[media.id] = media
            stats.media += 1
            if media.comments_count == 0:
                continue
            if not full and self._counts.get(media.id) == media.comments_count:
                continue  # nothing new since the last read (a full scan catches the rest)
            try:
                found = await graph_comments.media_comments(graph, media.id)
            except GraphError as exc:
                if exc.action == "token":
                    raise
                log.error("Instagram: reading the comments of post %s failed: %s", media.id, exc)
                self._counts.pop(media.id, None)
                continue  # the other posts still get their answers
            done = await rows.final_ids(self.replier.runtime.store, [c.id for c in found])
            settled = True
            for comment in found:
                if comment.id in done or self.replier.account.wrote(comment):
                    continue  # answered before, or the account's own words
                stats.comments += 1
                outcome = await self.replier.handle(comment)
                stats.outcomes[outcome.status] = stats.outcomes.get(outcome.status, 0) + 1
                settled &= outcome.status in (
                    "replied",
                    "recovered",
                    "skipped",
                    "own",
                    "done",
                    "failed",
                )
            if settled:
                self._counts[media.id] = media.comments_count
            else:
                self._counts.pop(media.id, None)  # read again on the next poll
        if len(self.replier.captions) > 4 * self.media_count:  # bounded: recent posts only
            for key in list(self.replier.captions)[: -2 * self.media_count]:
                self.replier.captions.pop(key, None)
        return stats


async def _sleep_or_stop(stop_event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop_event.wait(), timeout=max(0.0, seconds))


async def _drain_webhooks(
    replier: CommentReplier, queue: asyncio.Queue[Comment], stop_event: asyncio.Event
) -> None:
    while not stop_event.is_set():
        getting = asyncio.ensure_future(queue.get())
        stopping = asyncio.ensure_future(stop_event.wait())
        await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not getting.done():
            getting.cancel()
            return
        comment = getting.result()
        try:
            outcome = await replier.handle(comment)
            log.debug("Instagram webhook comment %s: %s", comment.id, outcome.status)
        except Exception:
            log.exception("Instagram: the webhook comment %s failed", comment.id)


async def run_comment_replies(
    runtime: Any, options: CommentOptions, stop_event: asyncio.Event
) -> None:
    """Poll and answer until stopped (the Instagram client's comment half)."""
    from carrier_cli.clients.instagram.journal import make_owner

    character = runtime.character
    rules = Rules.of(character.clients.instagram)
    async with GraphClient(options.graph) as graph:
        me = await graph.whoami()
        account = Account(str(me.get("id") or graph.account_id), str(me.get("username") or ""))
        replier = CommentReplier(runtime, graph, account, make_owner(), rules)
        poller = CommentPoller(replier, options.media_count)
        log.info(
            "Instagram[%s]: answering comments on the %d newest posts of @%s every %.0f s",
            character.name,
            options.media_count,
            account.username or account.id,
            options.poll_interval,
        )
        with comment_inbox.listening(graph.account_id) as queue:
            webhooks = asyncio.create_task(_drain_webhooks(replier, queue, stop_event))
            try:
                await _poll_while_leading(poller, runtime, options.poll_interval, stop_event)
            finally:
                webhooks.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await webhooks


async def _poll_while_leading(
    poller: CommentPoller, runtime: Any, interval: float, stop_event: asyncio.Event
) -> None:
    """Poll until stopped. On PostgreSQL only while this process leads the character's
    polling of the account (a cluster.leader lease): several `carrier run` on one database
    would answer each comment once anyway (the claims), but each would spend the account's
    Graph budget on the same reads. Webhook comments are answered by every process."""
    engine = getattr(runtime.store, "engine", None)
    shared = engine is not None and engine.dialect.name == "postgresql"
    while not stop_event.is_set():
        lease = None
        if shared:
            from carrier_cli.cluster.advisory import advisory_key
            from carrier_cli.cluster.leader import acquire

            account = poller.replier.account.id
            key = advisory_key("carrier.instagram.comments", account, poller.replier.character)
            what = f"Polling the comments of account {account} for {poller.replier.character}"
            lease = await acquire(engine, key, stop_event, what=what)
            if lease is None:
                return  # stopped while standing by
        try:
            while not stop_event.is_set() and not (lease is not None and lease.lost):
                await _poll_once(poller)
                await _sleep_or_stop(stop_event, interval)
        finally:
            if lease is not None:
                await lease.release()


async def _poll_once(poller: CommentPoller) -> None:
    """One poll; its failures are logged (the next poll tries again), but a rejected token
    stops the client with Graph's explanation."""
    name = poller.replier.character
    try:
        stats = await poller.poll()
        if stats.comments:
            log.info("Instagram[%s]: comments polled: %s", name, stats.outcomes)
    except GraphError as exc:
        if exc.action == "token":
            raise
        log.error("Instagram: polling comments failed: %s", exc)
    except CarrierError as exc:
        log.error("Instagram: polling comments failed: %s", exc)
    except Exception:
        log.exception("Instagram: unexpected error while polling comments")
