"""A Discord message's images and files, read from Discord's CDN only, for the turn.

What is read: the message's attachments; the images of its embeds (a link Discord unfurled,
read through Discord's media proxy, `proxy_url` on media.discordapp.net, never from the
site it links to); links in the text to images on Discord's CDN (a picture copied from
another message). Every URL's host must be one of Discord's CDN hosts (or the host of the
configured `discord_api_base`, where the test suite's fake Discord serves them); anything
else is listed, not fetched, so a message cannot make the bot request an arbitrary URL.
Redirects are not followed for the same reason.

Bounds (the character's `clients.discord` block): `max_images` images per message (the
rest are listed, not read), `max_image_bytes` per image and `max_text_attachment_bytes`
per document, checked against Discord's declared size before fetching and again while
reading (a server that sends more is cut off); FETCH_TIMEOUT per file; all files of a
message are fetched at once. A file that cannot be read gets a `note` saying why, which
the runtime shows to the model ("[image: huge.png, not read: larger than 10 MB]"), so
the reply can say so instead of ignoring it.

A text-only model is not sent images, so an image is fetched for it only when Discord did
not say its size (an embed without width and height): the description needs no bytes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from carrier_cli.runtime.attachment_files import extract_text, is_text_file, prepare_image

if TYPE_CHECKING:
    import aiohttp
    import discord

log = logging.getLogger("carrier_cli.discord")

DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
FETCH_TIMEOUT = 15.0  # seconds per file: a 10 MB image at 8 Mbit/s with room to spare
MAX_LINKS = 10  # CDN links looked at in one message's text
_LINK = re.compile(r"https?://[^\s<>()\"']+")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Limits:
    max_images: int = 4
    max_image_bytes: int = 10_000_000
    max_text_bytes: int = 1_000_000
    timeout: float = FETCH_TIMEOUT

    @classmethod
    def from_options(cls, options: Any) -> Limits:
        """From the character's `clients.discord` block."""
        return cls(
            max_images=int(getattr(options, "max_images", cls.max_images)),
            max_image_bytes=int(getattr(options, "max_image_bytes", cls.max_image_bytes)),
            max_text_bytes=int(getattr(options, "max_text_attachment_bytes", cls.max_text_bytes)),
        )


@dataclass
class Found:
    """One file a message points at, as Discord describes it."""

    url: str
    filename: str
    content_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    origin: str = "attachment"  # "attachment" | "embed" | "link"

    @property
    def is_image(self) -> bool:
        if self.content_type:
            return self.content_type.startswith("image/")
        return self.filename.lower().endswith(_IMAGE_SUFFIXES)


class FetchRefused(Exception):
    """Why a file was not read (the text becomes its `note`)."""


def allowed_hosts(api_base: str | None) -> frozenset[str]:
    """Discord's CDN hosts, plus the configured API base's host (a proxy, the fake)."""
    hosts = set(DISCORD_CDN_HOSTS)
    if api_base:
        host = urlsplit(api_base if "://" in api_base else f"https://{api_base}").hostname
        if host and host not in ("discord.com", "discordapp.com"):
            hosts.add(host.lower())
    return frozenset(hosts)


def on_cdn(url: str, hosts: frozenset[str]) -> bool:
    """An https URL on one of `hosts` (http only for a configured non-Discord host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme == "https":
        return host in hosts
    return parts.scheme == "http" and host in hosts and host not in DISCORD_CDN_HOSTS


def found_in(message: discord.Message, hosts: frozenset[str]) -> list[Found]:
    """Attachments, embed images and CDN image links of a message, each URL once."""
    found: list[Found] = [
        Found(
            url=a.url,
            filename=a.filename,
            content_type=a.content_type,
            size=a.size,
            width=a.width,
            height=a.height,
        )
        for a in message.attachments
    ]
    for embed in message.embeds:
        for media in (embed.image, embed.thumbnail):
            url = getattr(media, "proxy_url", None) or getattr(media, "url", None)
            if url:
                found.append(
                    Found(
                        url=url,
                        filename=_filename(getattr(media, "url", None) or url),
                        width=getattr(media, "width", None),
                        height=getattr(media, "height", None),
                        origin="embed",
                    )
                )
                break  # the image, else the thumbnail: one picture per embed
    for url in _LINK.findall(message.content or "")[:MAX_LINKS]:
        if on_cdn(url, hosts) and _filename(url).lower().endswith(_IMAGE_SUFFIXES):
            found.append(Found(url=url, filename=_filename(url), origin="link"))
    unique: dict[str, Found] = {}
    for item in found:
        unique.setdefault(item.url, item)
    return list(unique.values())


async def read_all(
    found: Sequence[Found],
    limits: Limits,
    hosts: frozenset[str],
    *,
    fetch_images: bool = True,
    proxy: str | None = None,
) -> list[dict[str, Any]]:
    """The turn's attachment records (see runtime/attachments.py), in message order."""
    if not found:
        return []
    import aiohttp

    records: list[dict[str, Any]] = []
    jobs: list[tuple[dict[str, Any], Found, int]] = []
    images = 0
    for item in found:
        record: dict[str, Any] = {"filename": item.filename, "url": item.url}
        if item.content_type:
            record["content_type"] = item.content_type
        if item.size is not None:
            record["size"] = item.size
        if item.origin != "attachment":
            record["origin"] = item.origin
        records.append(record)
        if item.is_image:
            record["kind"] = "image"
            if item.width and item.height:
                record["width"], record["height"] = item.width, item.height
            images += 1
            if images > limits.max_images:
                record["note"] = f"over the limit of {limits.max_images} images per message"
            elif fetch_images or not (item.width and item.height):
                jobs.append((record, item, limits.max_image_bytes))
        elif is_text_file(item.filename, item.content_type):
            record["kind"] = "text"
            jobs.append((record, item, limits.max_text_bytes))
        else:
            record["kind"] = "file"
    if not jobs:
        return records
    timeout = aiohttp.ClientTimeout(total=limits.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(
            *(
                _read_one(session, record, item, limit, hosts, fetch_images, proxy)
                for record, item, limit in jobs
            )
        )
    return records


async def _read_one(
    session: aiohttp.ClientSession,
    record: dict[str, Any],
    item: Found,
    limit: int,
    hosts: frozenset[str],
    keep_image: bool,
    proxy: str | None,
) -> None:
    """Fetch and read one file into `record`; a failure becomes its `note`."""
    try:
        if not on_cdn(item.url, hosts):
            raise FetchRefused("not on Discord's CDN, not fetched")
        if item.size is not None and item.size > limit:
            raise FetchRefused(f"larger than the {_size(limit)} limit")
        data = await fetch(session, item.url, limit, proxy=proxy)
        if record["kind"] == "image":
            prepared = await asyncio.to_thread(prepare_image, data)
            record["width"], record["height"] = prepared.width, prepared.height
            if keep_image:
                record["data"], record["mime"] = prepared.data, prepared.mime
        else:
            record["text"] = await asyncio.to_thread(
                extract_text, data, item.filename, item.content_type
            )
    except FetchRefused as exc:
        record["note"] = str(exc)
    except ValueError as exc:  # not an image / not text
        record["note"] = str(exc)
    except TimeoutError:
        record["note"] = "Discord's CDN did not send it in time"
    except Exception as exc:  # aiohttp's connection errors and the like
        record["note"] = f"could not fetch it ({type(exc).__name__})"
    if "note" in record:
        log.info("Discord: attachment %s %s", item.filename, record["note"])


async def fetch(
    session: aiohttp.ClientSession, url: str, limit: int, *, proxy: str | None = None
) -> bytes:
    """GET `url` without following redirects, at most `limit` bytes (FetchRefused past it)."""
    async with session.get(url, allow_redirects=False, proxy=proxy) as response:
        if response.status != 200:
            raise FetchRefused(f"Discord's CDN answered {response.status}")
        declared = response.content_length
        if declared is not None and declared > limit:
            raise FetchRefused(f"larger than the {_size(limit)} limit")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(65536):
            total += len(chunk)
            if total > limit:
                raise FetchRefused(f"larger than the {_size(limit)} limit")
            chunks.append(chunk)
        return b"".join(chunks)


async def ingest_texts(
    store: Any, agent_id: Any, records: Sequence[dict[str, Any]], *, channel_id: str
) -> int:
    """Text attachments as knowledge of the channel (`clients.discord.ingest_attachments`),
    through the knowledge ingest path: chunked into fragments, an unchanged file skipped.
    The source names the channel, so `carrier memory` shows where a document came from.
    Returns the documents added."""
    from carrier_cli.memory.knowledge import IngestReport, ingest_text

    report = IngestReport()
    for record in records:
        text = record.get("text")
        if record.get("kind") != "text" or not isinstance(text, str) or not text.strip():
            continue
        source = f"discord:{channel_id}/{record.get('filename')}"
        await ingest_text(
            store, agent_id, text, source=source, title=str(record.get("filename")), report=report
        )
    return int(report.documents_added + report.documents_replaced)


async def for_turn(
    message: discord.Message,
    runtime: Any,
    *,
    api_base: str | None,
    proxy: str | None = None,
    answering: bool = True,
) -> list[dict[str, Any]] | None:
    """The attachment records of `message` for its turn (None: it points at no file), read
    under the character's limits; text files ingested as the channel's knowledge when
    `clients.discord.ingest_attachments` is on (a failure there is logged: the turn goes on
    with the text in its context; one that cannot be read at all is logged and the message
    goes on without its files). `answering` False (a message only remembered, never
    answered): images are described, not downloaded."""
    hosts = allowed_hosts(api_base)
    try:
        found = found_in(message, hosts)
        if not found:
            return None
        options = runtime.character.clients.discord
        records = await read_all(
            found,
            Limits.from_options(options),
            hosts,
            fetch_images=answering and runtime_sees_images(runtime),
            proxy=proxy,
        )
    except Exception as exc:  # the message is still stored and answered, without its files
        log.warning(
            "Discord: could not read the files of message %s: %s: %s",
            message.id,
            type(exc).__name__,
            exc,
        )
        return None
    store, agent_id = getattr(runtime, "store", None), getattr(runtime, "agent_id", None)
    if getattr(options, "ingest_attachments", False) and store is not None and agent_id:
        try:
            added = await ingest_texts(store, agent_id, records, channel_id=str(message.channel.id))
            if added:
                log.info("Discord: ingested %d attached document(s) as knowledge", added)
        except Exception as exc:
            log.warning("Discord: could not ingest the attached documents: %s", exc)
    return records


def runtime_sees_images(runtime: Any) -> bool:
    """Whether the runtime's large model takes images (unknown runtime: assume it does)."""
    from carrier_cli.llm.vision import accepts_images

    config = getattr(runtime, "model_config", None)
    if config is None:
        return True
    override = getattr(getattr(runtime.character, "model", None), "vision", None)
    return accepts_images(str(config.large), override)


class HandOrder:
    """Hands a channel's messages to the runtime in arrival order although some first
    fetch their files. The runtime orders a room's turns by the order messages reach it
    (runtime/rooms.py); a message that waited seconds for its image must not be overtaken
    by the text sent after it. `ticket` is taken synchronously when the message's task
    starts (tasks start in arrival order); `wait` returns once every earlier message of
    the channel has been handed over; `handed` marks this one handed over (always called,
    in a `finally`). A message without files, behind none that fetch, never waits."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def ticket(self, channel_id: str) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        previous = self._tails.get(channel_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[channel_id] = mine
        return previous, mine

    @staticmethod
    async def wait(previous: asyncio.Future[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.shield(previous)

    def handed(self, channel_id: str, mine: asyncio.Future[None]) -> None:
        """Called right before the runtime call: the result is set by the loop after this
        task next yields, by which time the runtime has queued the message in its room."""
        if not mine.done():
            asyncio.get_running_loop().call_soon(_finish, mine)
        if self._tails.get(channel_id) is mine:
            del self._tails[channel_id]


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _filename(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path.rsplit("/", 1)[-1]) or "image"


def _size(count: int) -> str:
    return f"{count / 1_000_000:g} MB" if count >= 1_000_000 else f"{count / 1000:g} kB"
