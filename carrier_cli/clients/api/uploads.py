"""Media uploads: a multipart/form-data body streamed to files, never held in memory.

Starlette's own form parser spools files to the system temp directory without a size
bound, so an upload is parsed here instead (python-multipart's streaming parser, which
starlette uses underneath): each file part goes straight to a `.part` file in the
caller's directory, the whole body is bounded (413 as soon as it passes the bound, before
the rest is read), and a finished file is named by what its bytes are, not by the name
the client gave it (the pipeline picks its checks by suffix, and a `.jpg` that is really
a PNG or an MP4 must get the checks of what it is).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from carrier_cli.clients.api.errors import ApiError

MAX_FIELD_BYTES = 16_384  # a caption is at most 2,200 characters; alt text 1,000
MAX_FIELDS = 20
MAX_FILES = 10  # a carousel holds at most 10 files
SUPPORTED = "JPEG, PNG, WebP, GIF, BMP or TIFF images, or MP4/MOV videos"
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif"}


def sniff_suffix(head: bytes) -> str | None:
    """The file suffix the pipeline needs for content starting with `head`, or None when
    it is nothing Carrier can post."""
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ".webp"
    if head.startswith(b"BM"):
        return ".bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ".tif"
    box = head[4:8]
    if box == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return None  # HEIC/AVIF stills: Pillow here cannot read them
        return ".mov" if brand == b"qt  " else ".mp4"
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return ".mov"  # QuickTime files older than the ftyp box
    return None


def not_media(field_name: str, what: str) -> ApiError:
    return ApiError(
        422,
        "unsupported_media",
        f"Request field `{field_name}`: {what} is not an image or video Carrier can post.",
        hint=f"Send {SUPPORTED}.",
    )


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"The upload is larger than the limit of {limit:,} bytes.",
        hint="Send a smaller file, or raise the api_max_upload_bytes setting "
        "(CARRIER_API_MAX_UPLOAD_BYTES) on the server.",
    )


def _bad_form(message: str) -> ApiError:
    return ApiError(
        400,
        "bad_request",
        f"The multipart/form-data body is malformed: {message}.",
        hint="Send the media in a file field named `media` and the options as text fields "
        "(curl -F media=@photo.jpg -F caption=hello).",
    )


@dataclass
class Upload:
    """One file part as stored: where it is, what the client called it, its size."""

    path: Path
    filename: str
    size: int


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)

    def discard(self) -> None:
        for upload in self.files:
            remove_upload(upload.path)


def remove_upload(path: Path) -> None:
    """An upload and the folder of its own it was stored in (see `stored_name`)."""
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def stored_name(filename: str | None, suffix: str) -> str:
    """The name an upload is stored under, in a folder of its own: the client's name, made
    safe (letters, digits, `-`, `_`, `.`; at most 80 characters; never hidden), with the
    suffix its content was sniffed as. The name is what the journal, the queue and the
    character writing the caption see: a random one ("067ee9e5....jpg") told an approver
    nothing about which photo a draft was."""
    stem = Path(filename or "").stem
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in stem)
    safe = safe.strip(".-")[:80] or "upload"
    return safe + suffix


class _Receiver:
    """python-multipart callbacks: headers per part, file bytes to disk, fields to text."""

    def __init__(self, directory: Path, file_field: str) -> None:
        self.directory = directory
        self.file_field = file_field
        self.form = Form()
        self.open: list[Path] = []  # every .part file created, for cleanup on failure
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name = ""
        self._filename: str | None = None
        self._text = bytearray()
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._head = bytearray()
        self._size = 0
        self.error: ApiError | None = None

    # headers
    def on_part_begin(self) -> None:
        self._headers = {}
        self._name, self._filename = "", None
        self._text = bytearray()
        self._head = bytearray()
        self._size = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).decode("latin-1").lower()] = bytes(
            self._header_value
        )
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        kind, params = parse_options_header(self._headers.get("content-disposition", b""))
        if kind != b"form-data" or b"name" not in params:
            self._fail(_bad_form("a part has no `Content-Disposition: form-data; name=...`"))
            return
        self._name = params[b"name"].decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            if len(self.form.fields) >= MAX_FIELDS:
                self._fail(_bad_form(f"more than {MAX_FIELDS} fields"))
            return
        self._filename = filename.decode("utf-8", "replace")
        if self._name != self.file_field:
            self._fail(
                ApiError(
                    422,
                    "invalid_request",
                    f"Request field `{self._name}`: files go in the field `{self.file_field}`.",
                    hint=f"Send each file as `-F {self.file_field}=@FILE`.",
                )
            )
            return
        if len(self.form.files) >= MAX_FILES:
            self._fail(
                ApiError(
                    422,
                    "invalid_request",
                    f"Request field `{self.file_field}`: at most {MAX_FILES} files "
                    "(a carousel's limit).",
                )
            )
            return
        self._path = self.directory / f"{uuid.uuid4().hex}.part"
        self.open.append(self._path)
        self._file = self._path.open("wb")

    # bodies
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        chunk = data[start:end]
        if self._file is not None:
            if len(self._head) < 16:
                self._head += chunk[: 16 - len(self._head)]
            self._file.write(chunk)
            self._size += len(chunk)
        elif self._filename is None:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                self._fail(
                    ApiError(
                        422,
                        "invalid_request",
                        f"Request field `{self._name}`: longer than {MAX_FIELD_BYTES:,} bytes.",
                    )
                )

    def on_part_end(self) -> None:
        if self.error is not None:
            return
        if self._file is None:
            self.form.fields[self._name] = bytes(self._text).decode("utf-8", "replace")
            return
        self._file.close()
        self._file = None
        assert self._path is not None
        suffix = sniff_suffix(bytes(self._head)) if self._size else None
        if suffix is None:
            what = f"the file {self._filename!r}" if self._filename else "the file"
            if not self._size:
                what += " (empty)"
            self._fail(not_media(self.file_field, what))
            return
        folder = self._path.with_suffix("")  # the part's random name: unique per upload
        folder.mkdir()
        final = folder / stored_name(self._filename, suffix)
        self._path.replace(final)
        self.open.append(final)
        self.form.files.append(Upload(final, self._filename or final.name, self._size))

    def _fail(self, error: ApiError) -> None:
        if self.error is None:
            self.error = error

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove_files(self) -> None:
        self.close()
        for path in self.open:
            if path.suffix == ".part":
                with contextlib.suppress(OSError):
                    path.unlink()
            else:
                remove_upload(path)


async def read_form(
    request: Any, directory: Path, *, max_bytes: int, file_field: str = "media"
) -> Form:
    """Stream the request's multipart body: files to `directory`, at most `max_bytes` in
    all. On any failure every file written is removed and an ApiError raised."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad_form("the Content-Type header has no boundary")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large(max_bytes)  # refused before reading a byte of it
    directory.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(directory, file_field)
    callbacks: Any = {
        name: getattr(receiver, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(boundary, callbacks)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            parser.write(chunk)
            if receiver.error is not None:
                raise receiver.error
        parser.finalize()
        if receiver.error is not None:
            raise receiver.error
        if receiver._file is not None:
            raise _bad_form("the body ends inside a file part")
    except MultipartParseError as exc:
        receiver.remove_files()
        raise _bad_form(str(exc).rstrip(".") or "unreadable") from None
    except BaseException:
        receiver.remove_files()
        raise
    receiver.close()
    return receiver.form
