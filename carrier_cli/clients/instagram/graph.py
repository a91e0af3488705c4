"""A small Graph API client for Instagram content publishing (aiohttp).

Graph errors arrive as JSON with a numeric `code` and `error_subcode`; the tables here
turn them into what the operator should do and decide which ones are worth retrying, so
that the pipeline never retries a refusal and never gives up on a hiccup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from carrier_cli.clients.instagram.rate_limits import THROTTLE_CODES, governor_for
from carrier_cli.errors import ConfigError, RuntimeFailure

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.options import GraphOptions

log = logging.getLogger(__name__)

Action = Literal[
    "retry", "not_ready", "published", "recreate", "quota", "token", "stop", "fix_input", "fail"
]

_RETRY_CODES = {-1, -2, 1, 2}
_THROTTLE_CODES = THROTTLE_CODES  # 4, 17, 32, 613 and 80002 (rate_limits.py)
_RETRY_SUBCODES = {2207003, 2207001, 2207032, 2207053}
# "Your media is wrong": the documented media-error subcodes, each with the rule that
# failed. One table decides both the classification ("fix_input", which no retry can cure)
# and the message, so a subcode added here is at once exit 2 with its rule spelled out.
MEDIA_ERRORS: dict[int, str] = {
    2207004: "an image may be at most 8 MiB",
    2207005: "the media format is not supported: images must be JPEG (baseline), 320 to "
    "1440 px wide; videos MP4 or MOV with H.264/HEVC and AAC",
    2207009: "the aspect ratio must be between 4:5 (0.8) and 1.91:1 for feed posts "
    "(use --fit pad or --fit crop)",
    2207010: "a caption may have at most 2,200 characters, 30 hashtags and 20 @mentions",
    2207023: "the media type is not known (IMAGE, CAROUSEL, REELS or STORIES)",
    2207028: "a carousel needs 2 to 10 items",
    2207057: "the thumbnail offset must be at least 0 and less than the video's length",
}
# Codes that Meta pairs with these subcodes; a body with the code but no subcode is still
# a media refusal.
_MEDIA_CODES = {36000, 36001, 36003, 36004}
# 9007 with this subcode: media_publish was asked again for a container that is already
# published (an earlier answer was lost on the way back). The post is out; it is a success.
_ALREADY_PUBLISHED = 2207026


class StopRequested(Exception):
    """The process is stopping; the journal keeps the last completed step for later."""


class GraphError(RuntimeFailure):
    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        http_status: int = 0,
        action: Action = "fail",
        hint: str | None = None,
        raw_message: str = "",
    ) -> None:
        # A refused media is bad input (exit 2), like any other invalid file: no retry
        # and no server can fix it, only the operator can.
        super().__init__(message, hint=hint, exit_code=2 if action == "fix_input" else None)
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.action = action
        self.raw_message = raw_message


def classify(code: int | None, subcode: int | None, transient: bool, http_status: int) -> Action:
    if code == 190 or code in (102, 463, 467):
        return "token"
    if code == 9007 and subcode == _ALREADY_PUBLISHED:
        return "published"
    if code == 9007 or subcode == 2207027:
        return "not_ready"
    if code == 9 or subcode == 2207042:
        return "quota"
    if subcode in (2207051, 2207050) or code == 25:
        return "stop"
    if code == 24 or subcode in (2207006, 2207008):
        return "recreate"
    if subcode in MEDIA_ERRORS or code in _MEDIA_CODES:
        return "fix_input"
    if code == 4 and subcode == 2207051:
        return "stop"
    if (
        code in _RETRY_CODES
        or code in _THROTTLE_CODES
        or subcode in _RETRY_SUBCODES
        or transient
        or http_status >= 500
    ):
        return "retry"
    return "fail"


def error_from_body(body: Any, http_status: int, what: str) -> GraphError:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        action: Action = "retry" if http_status >= 500 or http_status == 429 else "fail"
        return GraphError(
            f"{what}: the Graph API answered HTTP {http_status} without an error body.",
            http_status=http_status,
            action=action,
        )
    code = err.get("code")
    subcode = err.get("error_subcode")
    raw = str(err.get("message", ""))
    user_msg = err.get("error_user_msg")
    action = classify(code, subcode, bool(err.get("is_transient")), http_status)
    ident = f"code {code}" + (f"/{subcode}" if subcode else "")
    detail = f"{user_msg} ({raw})" if user_msg else raw
    hint: str | None = None
    if action == "token":
        hint = (
            "Renew the token: create a long-lived token for the Instagram account (Meta App "
            "Dashboard > Instagram > API setup, or exchange a short-lived one), then store it "
            "with `carrier keys set instagram` or INSTAGRAM_ACCESS_TOKEN, and check it with "
            "`carrier instagram whoami`."
        )
        message = f"{what}: Instagram rejected the access token ({ident}: {detail})."
    elif action == "quota":
        message = f"{what}: the account reached its publishing limit ({ident}: {detail})."
        hint = "See `carrier instagram limit` for when a slot frees up."
    elif action == "stop":
        message = (
            f"{what}: Instagram restricted this account or flagged the action as spam "
            f"({ident}: {detail})."
        )
        hint = "Stop posting and check the account in the Instagram app; Carrier will not retry."
    elif action == "fix_input":
        rule = MEDIA_ERRORS.get(subcode or 0, "the media does not meet Instagram's specs")
        message = f"{what}: Instagram refused the media: {rule} ({ident}: {detail})."
        hint = (
            "Fix the file (or caption) and post it again; `carrier instagram post --dry-run` "
            "shows what Carrier would send. Retrying the same media cannot succeed."
        )
    elif subcode == 2207052 or code == 9004:
        message = f"{what}: Instagram could not fetch the media from its URL ({ident}: {detail})."
        hint = (
            "HTTP_SERVER must be reachable from the internet and serve FTP_DIRECTORY "
            "directly (no redirect, no login page)."
        )
        action = "fail"
    else:
        message = f"{what}: the Graph API refused the request ({ident}: {detail})."
    return GraphError(
        message,
        code=code,
        subcode=subcode,
        http_status=http_status,
        action=action,
        hint=hint,
        raw_message=raw,
    )


@dataclass
class Quota:
    usage: int
    total: int
    duration: int  # seconds of the rolling window

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.usage)


@dataclass
class ContainerStatus:
    id: str
    status_code: str
    status: str = ""


class GraphClient:
    """One aiohttp session; the token goes in a header so it never appears in a URL."""

    def __init__(
        self,
        options: GraphOptions,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
    ) -> None:
        token = options.access_token
        if not token:
            raise ConfigError(
                "INSTAGRAM_ACCESS_TOKEN is not set.",
                hint="Store it with `carrier keys set instagram` or set INSTAGRAM_ACCESS_TOKEN "
                "(the README section 'Post to Instagram' explains how to get one).",
            )
        if not options.account_id:
            raise ConfigError(
                "INSTAGRAM_ACCOUNT_ID is not set.",
                hint="Set it to the Instagram professional account id (the numeric IG user id, "
                "not the username); `carrier instagram whoami` checks it.",
            )
        from carrier_cli.state import register_secret

        register_secret(token)
        self._token = token
        self.account_id = options.account_id
        base = options.api_base or f"https://{options.api_host}"
        self.base = f"{base.rstrip('/')}/{options.api_version.strip('/')}"
        self.retries = options.max_retries
        self.retry_delay = options.retry_delay
        self.poll_interval = options.poll_interval
        self.poll_timeout = options.poll_timeout
        self._session = session
        self._own_session = session is None
        self._timeout = timeout
        # Usage headers slow every client of this account down before Meta throttles it.
        self.governor = governor_for(self.base, self.account_id)

    def auth_header(self, scheme: str = "Bearer") -> dict[str, str]:
        """The token as a header for Meta's other hosts (rupload wants `OAuth <token>`)."""
        return {"Authorization": f"{scheme} {self._token}"}

    async def __aenter__(self) -> GraphClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, *, what: str
    ) -> dict[str, Any]:
        """Call the API, retrying transient failures with exponential back-off."""
        if self._session is None:
            await self.__aenter__()
        assert self._session is not None
        url = f"{self.base}/{path.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self._token}"}
        attempt = 0
        while True:
            attempt += 1
            await self.governor.pace()
            try:
                if method == "GET":
                    ctx = self._session.get(url, params=params, headers=headers)
                else:
                    ctx = self._session.post(url, data=params, headers=headers)
                async with ctx as response:
                    status = response.status
                    self.governor.observe(response.headers)
                    try:
                        body = await response.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        body = None
                if status < 400 and isinstance(body, dict) and "error" not in body:
                    return body
                error = error_from_body(body, status, what)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = GraphError(
                    f"{what}: could not reach the Graph API at {self.base} "
                    f"({type(exc).__name__}: {exc}).",
                    action="retry",
                    hint="Check the network, GRAPH_API_HOST and GRAPH_API_BASE.",
                )
            if error.action != "retry" or attempt > self.retries:
                raise error
            delay = self.retry_delay * (2 ** (attempt - 1))
            if error.code in _THROTTLE_CODES:
                delay = self.governor.throttle_wait(attempt, self.retry_delay * 5)
            log.warning(
                "%s failed (%s); retry %d/%d in %.2fs",
                what,
                error.message,
                attempt,
                self.retries,
                delay,
            )
            await asyncio.sleep(delay)

    # -- endpoints ---------------------------------------------------------------------
    async def whoami(self) -> dict[str, Any]:
        return await self.request(
            "GET",
            self.account_id,
            {"fields": "id,username,name"},
            what="Checking the Instagram account",
        )

    async def publishing_limit(self) -> Quota:
        body = await self.request(
            "GET",
            f"{self.account_id}/content_publishing_limit",
            {"fields": "config,quota_usage"},
            what="Reading the publishing limit",
        )
        data = (body.get("data") or [{}])[0]
        config = data.get("config") or {}
        try:
            return Quota(
                int(data.get("quota_usage", 0)),
                int(config["quota_total"]),
                int(config.get("quota_duration", 86400)),
            )
        except (KeyError, TypeError, ValueError):
            raise GraphError(
                f"Reading the publishing limit: the answer has no quota_total ({body})."
            ) from None

    async def create_container(self, params: dict[str, str], *, what: str) -> str:
        body = await self.request("POST", f"{self.account_id}/media", params, what=what)
        return str(body["id"])

    async def container_status(self, container_id: str) -> ContainerStatus:
        body = await self.request(
            "GET",
            container_id,
            {"fields": "status_code,status"},
            what=f"Checking container {container_id}",
        )
        return ContainerStatus(
            container_id, str(body.get("status_code", "")), str(body.get("status", ""))
        )

    async def wait_finished(
        self, container_id: str, stop_event: asyncio.Event | None = None
    ) -> ContainerStatus:
        """Poll with growing intervals until FINISHED/PUBLISHED, or return ERROR/EXPIRED."""
        deadline = time.monotonic() + self.poll_timeout
        interval = self.poll_interval
        while True:
            status = await self.container_status(container_id)
            if status.status_code in ("FINISHED", "PUBLISHED", "ERROR", "EXPIRED"):
                return status
            if time.monotonic() + interval > deadline:
                raise RuntimeFailure(
                    f"Instagram is still processing container {container_id} "
                    f"({status.status_code}) after {self.poll_timeout:.0f} s.",
                    hint="Run `carrier instagram resume ID` later to continue waiting, or raise "
                    "instagram_poll_timeout.",
                )
            if stop_event is None:
                await asyncio.sleep(interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_event.wait(), interval)
                if stop_event.is_set():
                    raise StopRequested(f"stopped while container {container_id} was processed")
            interval = min(interval * 1.5, self.poll_interval * 4)

    async def publish(self, container_id: str) -> str | None:
        """media_publish, waiting while Instagram still says "not ready" (bounded).

        Returns the media id, or None when Instagram says the container is already published:
        the answer to an earlier media_publish (maybe one of this call's own retries) was lost,
        the post did go out, and publishing again would be refused anyway. The caller finds
        the id with `published_media_id`, as for a container whose status is PUBLISHED.
        """
        deadline = time.monotonic() + self.poll_timeout
        interval = self.poll_interval
        while True:
            try:
                body = await self.request(
                    "POST",
                    f"{self.account_id}/media_publish",
                    {"creation_id": container_id},
                    what="Publishing",
                )
                return str(body["id"])
            except GraphError as exc:
                if exc.action == "published":
                    log.info("container %s was already published (%s)", container_id, exc)
                    return None
                if exc.action != "not_ready" or time.monotonic() + interval > deadline:
                    raise
                log.info("container %s not ready yet; waiting %.2fs", container_id, interval)
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, self.poll_interval * 4)

    async def published_media_id(self, caption: str | None) -> str | None:
        """The media id of a post that is out but whose media_publish answer was lost.

        The Graph API has no field linking a container to its media, so the account's most
        recent media (`GET /{ig-user-id}/media`) are searched for the caption; only a single
        match is trusted. Anything else (no caption, no match, two matches, an error) gives
        None: "published, media id unknown", never a second publish.
        """
        if not caption:
            return None
        try:
            body = await self.request(
                "GET",
                f"{self.account_id}/media",
                {"fields": "id,caption,timestamp", "limit": "10"},
                what="Reading the recent media",
            )
        except GraphError as exc:
            log.info("could not read the recent media: %s", exc)
            return None
        data = body.get("data")
        rows = data if isinstance(data, list) else []
        matches = [r for r in rows if isinstance(r, dict) and r.get("caption") == caption]
        return str(matches[0]["id"]) if len(matches) == 1 and matches[0].get("id") else None

    async def permalink(self, media_id: str) -> str | None:
        try:
            body = await self.request(
                "GET", media_id, {"fields": "permalink"}, what="Reading the permalink"
            )
        except GraphError as exc:
            log.info("no permalink for %s: %s", media_id, exc)
            return None
        link = body.get("permalink")
        return str(link) if link else None
