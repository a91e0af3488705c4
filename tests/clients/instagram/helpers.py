"""Small media files built in the test, so the suite needs no binary fixtures."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image

from carrier_cli.clients.instagram.ftp_upload import FtpConfig


def make_image(
    path: Path,
    size: tuple[int, int] = (800, 800),
    *,
    fmt: str | None = None,
    mode: str = "RGB",
    color: object = (200, 60, 40),
    **save: object,
) -> Path:
    image = Image.new(mode, size, color)  # type: ignore[arg-type]
    # A little structure so JPEG sizes are realistic and conversions are visible.
    for x in range(0, size[0], 37):
        for y in range(0, size[1], 53):
            image.putpixel((x, y), (0, 0, 0, 255)[: len(mode)] if mode != "P" else 0)
    image.save(path, fmt, **save)
    return path


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, payload: bytes, version: int = 0) -> bytes:
    return _box(kind, bytes([version, 0, 0, 0]) + payload)


def make_mp4(
    path: Path,
    *,
    seconds: float = 5.0,
    width: int = 1080,
    height: int = 1920,
    moov_first: bool = True,
    codec: bytes = b"avc1",
    audio: bytes | None = b"mp4a",
    mdat_bytes: int = 4096,
    brand: bytes = b"isom",
) -> Path:
    """A structurally valid MP4 (boxes only, no decodable frames) with the given properties."""
    timescale = 1000
    mvhd = _full(
        b"mvhd", struct.pack(">IIII", 0, 0, timescale, int(seconds * timescale)) + b"\x00" * 80
    )

    def trak(handler: bytes, fourcc: bytes, w: int, h: int) -> bytes:
        tkhd = _full(b"tkhd", b"\x00" * 72 + struct.pack(">II", w << 16, h << 16))
        hdlr = _full(b"hdlr", b"\x00" * 4 + handler + b"\x00" * 12 + b"handler\x00")
        stsd = _full(b"stsd", struct.pack(">I", 1) + _box(fourcc, b"\x00" * 8))
        stbl = _box(b"stbl", stsd)
        minf = _box(b"minf", stbl)
        mdia = _box(b"mdia", hdlr + minf)
        return _box(b"trak", tkhd + mdia)

    tracks = trak(b"vide", codec, width, height)
    if audio:
        tracks += trak(b"soun", audio, 0, 0)
    moov = _box(b"moov", mvhd + tracks)
    ftyp = _box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"mp41")
    mdat = _box(b"mdat", b"\x00" * mdat_bytes)
    path.write_bytes(ftyp + (moov + mdat if moov_first else mdat + moov))
    return path


def jpeg_info(data: bytes) -> tuple[str | None, tuple[int, int], bool]:
    image = Image.open(io.BytesIO(data))
    return image.format, image.size, bool(image.info.get("progressive"))


def ftp_config(server: dict[str, object], **kw: object) -> FtpConfig:
    """An FtpConfig for a test server (`server`: its host, port, username, password...):
    no TLS preference, the root directory and a 10 s timeout unless `server` or `kw`
    (a test's own changes) say otherwise."""
    values = {"tls": None, "directory": "/", "timeout": 10.0, **server, **kw}
    return FtpConfig(**values)  # type: ignore[arg-type]
