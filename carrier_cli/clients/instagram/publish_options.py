"""The publishing options of one post beyond caption and alt text, checked like Meta does.

`carrier instagram post --collaborator/--user-tag/--location-id/--cover/--thumb-offset/
--share-to-feed/--audio-name` (and the same fields of `POST /v1/instagram/posts`) become a
`PublishOptions`. It is checked twice before anything is uploaded: its syntax when it is
built (`build`), and against the kind of post and the media once they are known
(`check_for`), each refusal naming the flag. It is journaled with the post
(`to_journal`/`from_journal`), so a resumed post sends exactly what the first run would
have sent, and it turns into the container parameters Meta expects (`container_params`).

Meta's rules, from the IG User Media reference (v21 onwards):

* `collaborators`: up to 3 Instagram usernames on feed images, carousels (on the carousel
  container, not its items) and Reels; none on stories.
* `user_tags`: `[{"username", "x", "y"}]`, x and y in 0.0-1.0 (the tag's position in the
  image), on images (a single image post) and stories; Reels and carousels refuse them
  here (on a carousel they belong to one item, which these flags cannot name). At most 20
  tags per media, Instagram's limit in the app.
* `location_id`: the numeric id of a Facebook Page with a location; feed posts and Reels.
* `cover_url` and `thumb_offset` (milliseconds into the video): Reels only; Meta uses
  the cover when both are sent, so asking for both is refused rather than half-ignored.
  The offset must be below the video's length (error 2207057 otherwise).
* `share_to_feed`, `audio_name`: Reels only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carrier_cli.errors import InputError

MAX_COLLABORATORS = {"image": 3, "carousel": 3, "reel": 3, "story": 0}
MAX_USER_TAGS = 20
MAX_AUDIO_NAME = 100  # Meta documents no limit; the Reels screen shows about this many
MAX_THUMB_OFFSET_MS = 15 * 60 * 1000  # the longest Reel
# Instagram usernames: letters, digits, periods and underscores, at most 30 characters.
_USERNAME = re.compile(r"^[A-Za-z0-9._]{1,30}$")
_TAG = re.compile(r"^@?(?P<user>[^@]+?)(?:@(?P<x>[^,]*),(?P<y>.*))?$")


class OptionError(InputError):
    """An option Meta would refuse; `option` is its name (a PublishOptions field), so the
    API can name its request field and the command line its flag."""

    def __init__(self, option: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.option = option


@dataclass(frozen=True)
class UserTag:
    username: str
    x: float | None = None
    y: float | None = None

    def to_param(self) -> dict[str, Any]:
        """Meta's shape; an image needs a position, so a tag without one sits centred."""
        return {
            "username": self.username,
            "x": 0.5 if self.x is None else self.x,
            "y": 0.5 if self.y is None else self.y,
        }


@dataclass(frozen=True)
class PublishOptions:
    collaborators: tuple[str, ...] = ()
    user_tags: tuple[UserTag, ...] = ()
    location_id: str | None = None
    cover: Path | None = None
    thumb_offset_ms: int | None = None
    share_to_feed: bool | None = None  # None: Meta's default (true)
    audio_name: str | None = None
    # The flag (or API field) each option came from, for the messages: "--collaborator"
    # on the command line, "collaborators" in the API.
    names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return self == PublishOptions()

    def flag(self, option: str) -> str:
        return self.names.get(option, CLI_FLAGS[option])

    # -- the journal ---------------------------------------------------------------------
    def to_journal(self) -> dict[str, Any]:
        """Only what was asked for, so posts without options journal nothing new."""
        data: dict[str, Any] = {}
        if self.collaborators:
            data["collaborators"] = list(self.collaborators)
        if self.user_tags:
            data["user_tags"] = [
                {"username": t.username, "x": t.x, "y": t.y} for t in self.user_tags
            ]
        for name in ("location_id", "thumb_offset_ms", "share_to_feed", "audio_name"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.cover is not None:
            data["cover"] = str(self.cover)
        return data

    @classmethod
    def from_journal(cls, data: dict[str, Any] | None) -> PublishOptions:
        data = data or {}
        return cls(
            collaborators=tuple(data.get("collaborators") or ()),
            user_tags=tuple(
                UserTag(t["username"], t.get("x"), t.get("y")) for t in data.get("user_tags") or ()
            ),
            location_id=data.get("location_id"),
            cover=Path(data["cover"]) if data.get("cover") else None,
            thumb_offset_ms=data.get("thumb_offset_ms"),
            share_to_feed=data.get("share_to_feed"),
            audio_name=data.get("audio_name"),
        )

    def key_text(self) -> str:
        """What identifies these options in the post's idempotency key (empty: none, so
        the keys of posts without options stay what they were). The cover is keyed by its
        content with the media, not by its path."""
        data = self.to_journal()
        data.pop("cover", None)
        return json.dumps(data, sort_keys=True) if data else ""


CLI_FLAGS = {
    "collaborators": "--collaborator",
    "user_tags": "--user-tag",
    "location_id": "--location-id",
    "cover": "--cover",
    "thumb_offset_ms": "--thumb-offset",
    "share_to_feed": "--share-to-feed/--no-share-to-feed",
    "audio_name": "--audio-name",
}
API_FIELDS = {name: name for name in CLI_FLAGS} | {"thumb_offset_ms": "thumb_offset"}


def _username(text: str, flag: str) -> str:
    name = text.strip().removeprefix("@")
    if not _USERNAME.match(name):
        raise InputError(
            f"{flag} `{text}` is not an Instagram username (letters, digits, '.' and '_', "
            "at most 30 characters).",
            hint=f"Write the @name without the @, e.g. {flag} marina.sails.",
        )
    return name


def parse_user_tag(text: str, flag: str = "--user-tag") -> UserTag:
    """`USER` or `USER@x,y` with x and y between 0 and 1 (0,0 is the top left corner)."""
    match = _TAG.match(text.strip())
    if match is None:
        raise InputError(f"{flag} `{text}`: write USER or USER@x,y (e.g. marina@0.5,0.3).")
    user = _username(match["user"], flag)
    if match["x"] is None:
        return UserTag(user)
    coords = []
    for axis in ("x", "y"):
        try:
            value = float(match[axis])
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
            raise InputError(
                f"{flag} `{text}`: {axis} must be a number from 0 to 1 (the tag's position "
                "as a fraction of the image's width and height).",
                hint=f"E.g. {flag} {user}@0.5,0.5 for the centre.",
            )
        coords.append(value)
    return UserTag(user, coords[0], coords[1])


def build(
    *,
    collaborators: list[str] | None = None,
    user_tags: list[str] | None = None,
    location_id: str | None = None,
    cover: Path | None = None,
    thumb_offset_ms: int | None = None,
    share_to_feed: bool | None = None,
    audio_name: str | None = None,
    names: dict[str, str] | None = None,
) -> PublishOptions:
    """The options as given, with their syntax checked (the media is checked later)."""
    names = names or CLI_FLAGS
    try:
        users = [_username(c, names["collaborators"]) for c in collaborators or []]
    except InputError as exc:
        raise OptionError("collaborators", exc.message, hint=exc.hint) from None
    lowered = [u.lower() for u in users]
    if len(set(lowered)) != len(lowered):
        raise OptionError(
            "collaborators", f"{names['collaborators']}: the same account is named twice."
        )
    try:
        tags = [parse_user_tag(t, names["user_tags"]) for t in user_tags or []]
    except InputError as exc:
        raise OptionError("user_tags", exc.message, hint=exc.hint) from None
    if len(tags) > MAX_USER_TAGS:
        raise OptionError(
            "user_tags",
            f"{names['user_tags']} given {len(tags)} times; Instagram allows at most "
            f"{MAX_USER_TAGS} tags on one image.",
        )
    if len({t.username.lower() for t in tags}) != len(tags):
        raise OptionError("user_tags", f"{names['user_tags']}: the same account is tagged twice.")
    if location_id is not None:
        location_id = location_id.strip()
        if not location_id.isdigit() or len(location_id) > 30:
            raise OptionError(
                "location_id",
                f"{names['location_id']} `{location_id}` is not a location id: it is the "
                "numeric id of a Facebook Page that has a location.",
                hint="Find it with the Graph API's Pages search (GET /pages/search?q=...), "
                "or in the Page's About section.",
            )
    if cover is not None and not cover.is_file():
        raise OptionError("cover", f"{names['cover']} {cover}: file not found.")
    if thumb_offset_ms is not None and not 0 <= thumb_offset_ms <= MAX_THUMB_OFFSET_MS:
        raise OptionError(
            "thumb_offset_ms",
            f"{names['thumb_offset_ms']} {thumb_offset_ms}: milliseconds from the start of "
            f"the video, 0 to {MAX_THUMB_OFFSET_MS:,} (15 minutes).",
        )
    if cover is not None and thumb_offset_ms is not None:
        raise OptionError(
            "cover",
            f"{names['cover']} and {names['thumb_offset_ms']} exclude each other: Instagram "
            "uses the cover image and ignores the offset when both are sent.",
            hint="Pick one: a cover image, or the frame at an offset.",
        )
    if audio_name is not None:
        audio_name = audio_name.strip()
        if not audio_name or len(audio_name) > MAX_AUDIO_NAME:
            raise OptionError(
                "audio_name",
                f"{names['audio_name']}: 1 to {MAX_AUDIO_NAME} characters "
                f"({len(audio_name)} given).",
            )
    return PublishOptions(
        collaborators=tuple(users),
        user_tags=tuple(tags),
        location_id=location_id,
        cover=cover,
        thumb_offset_ms=thumb_offset_ms,
        share_to_feed=share_to_feed,
        audio_name=audio_name,
        names=dict(names),
    )


_KIND_LABEL = {"image": "an image post", "carousel": "a carousel", "reel": "a Reel"}


def check_for(options: PublishOptions, kind: str, video_seconds: float | None) -> None:
    """Refuse the options that this kind of post cannot carry (before any upload).

    `video_seconds`: the video's length for a Reel, to check the thumbnail offset.
    """
    label = _KIND_LABEL.get(kind, "a story")
    limit = MAX_COLLABORATORS.get(kind, 0)
    if len(options.collaborators) > limit:
        flag = options.flag("collaborators")
        raise OptionError(
            "collaborators",
            f"{flag} given {len(options.collaborators)} times; "
            + (
                "stories cannot have collaborators."
                if limit == 0
                else f"{label} takes at most {limit} collaborators (Meta's limit)."
            ),
            hint=None if limit == 0 else f"Keep the {limit} most important accounts.",
        )
    if options.user_tags and kind not in ("image", "story"):
        raise OptionError(
            "user_tags",
            f"{options.flag('user_tags')} applies to single images and stories; {label} "
            "cannot carry tags through the API"
            + (" (they belong to one carousel item)." if kind == "carousel" else "."),
        )
    if options.location_id is not None and kind == "story":
        raise OptionError(
            "location_id", f"{options.flag('location_id')}: stories cannot have a location."
        )
    for option in ("cover", "thumb_offset_ms", "share_to_feed", "audio_name"):
        if getattr(options, option) is not None and kind != "reel":
            raise OptionError(
                option, f"{options.flag(option)} applies to Reels only, not to {label}."
            )
    offset = options.thumb_offset_ms
    if offset is not None and video_seconds is not None and offset >= video_seconds * 1000:
        raise OptionError(
            "thumb_offset_ms",
            f"{options.flag('thumb_offset_ms')} {offset}: the video lasts "
            f"{video_seconds * 1000:.0f} ms; the offset must be below that.",
        )


def container_params(
    options: PublishOptions, kind: str, *, child: bool, cover_url: str | None = None
) -> dict[str, str]:
    """The options as parameters of the container request (JSON-encoded lists, as the
    Graph API reads them from a form body). Carousel items carry none of them."""
    if child:
        return {}
    params: dict[str, str] = {}
    if options.collaborators:
        params["collaborators"] = json.dumps(list(options.collaborators))
    if options.user_tags:
        params["user_tags"] = json.dumps([t.to_param() for t in options.user_tags])
    if options.location_id:
        params["location_id"] = options.location_id
    if kind == "reel":
        if cover_url:
            params["cover_url"] = cover_url
        if options.thumb_offset_ms is not None:
            params["thumb_offset"] = str(options.thumb_offset_ms)
        if options.audio_name:
            params["audio_name"] = options.audio_name
        params["share_to_feed"] = "false" if options.share_to_feed is False else "true"
    return params
