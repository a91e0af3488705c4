"""Just enough of the ISO base media format (MP4/MOV) to check a video without ffmpeg.

Instagram rejects videos late (after the upload, while "processing"), with vague errors.
Reading the box structure locally catches the common causes first: wrong container,
`moov` after `mdat` (not "fast start"), duration, frame width and codecs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# Boxes whose payload is a list of child boxes.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta"}


class Mp4Error(ValueError):
    """The file is not a readable MP4/MOV; the message says what was wrong."""


@dataclass
class Track:
    kind: str  # "vide", "soun", or another handler type
    width: float = 0.0
    height: float = 0.0
    codec: str | None = None


@dataclass
class VideoInfo:
    brand: str
    top_level: list[str]
    duration_seconds: float
    tracks: list[Track] = field(default_factory=list)

    @property
    def moov_before_mdat(self) -> bool:
        if "mdat" not in self.top_level:
            return True
        return "moov" in self.top_level and (
            self.top_level.index("moov") < self.top_level.index("mdat")
        )

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks if t.kind == "vide"), None)

    @property
    def audio(self) -> Track | None:
        return next((t for t in self.tracks if t.kind == "soun"), None)


def _read_header(f: BinaryIO, end: int) -> tuple[bytes, int, int] | None:
    """(type, payload start, box end) of the box at the current position, None at the end."""
    start = f.tell()
    if start + 8 > end:
        return None
    header = f.read(8)
    if len(header) < 8:
        return None
    size, kind = struct.unpack(">I4s", header)
    if size == 1:
        large = f.read(8)
        if len(large) < 8:
            raise Mp4Error("truncated 64-bit box size")
        size = struct.unpack(">Q", large)[0]
    elif size == 0:
        size = end - start
    payload = f.tell()
    if size < payload - start or start + size > end:
        raise Mp4Error(f"box '{kind.decode('latin-1')}' at byte {start} has an impossible size")
    return kind, payload, start + size


def _parse_mvhd(data: bytes) -> float:
    version = data[0]
    if version == 1:
        timescale, duration = struct.unpack(">IQ", data[20:32])
    else:
        timescale, duration = struct.unpack(">II", data[12:20])
    if not timescale:
        raise Mp4Error("mvhd has a zero timescale")
    return float(duration) / timescale


def _parse_tkhd(data: bytes) -> tuple[float, float]:
    width, height = struct.unpack(">II", data[-8:])
    return width / 65536.0, height / 65536.0


def _walk(f: BinaryIO, end: int, info: VideoInfo, track: Track | None) -> None:
    while True:
        header = _read_header(f, end)
        if header is None:
            return
        kind, payload, box_end = header
        if kind in _CONTAINERS:
            if kind == b"trak":
                child = Track(kind="")
                _walk(f, box_end, info, child)
                info.tracks.append(child)
            else:
                _walk(f, box_end, info, track)
        elif kind == b"mvhd":
            info.duration_seconds = _parse_mvhd(f.read(min(box_end - payload, 64)))
        elif kind == b"tkhd" and track is not None:
            track.width, track.height = _parse_tkhd(f.read(box_end - payload))
        elif kind == b"hdlr" and track is not None:
            data = f.read(min(box_end - payload, 12))
            track.kind = data[8:12].decode("latin-1")
        elif kind == b"stsd" and track is not None:
            data = f.read(min(box_end - payload, 16))
            if len(data) >= 16:
                track.codec = data[12:16].decode("latin-1")
        f.seek(box_end)


def probe(path: Path) -> VideoInfo:
    """Read the structure of an MP4/MOV file; raises Mp4Error when it is not one."""
    size = path.stat().st_size
    with path.open("rb") as f:
        top: list[tuple[bytes, int, int]] = []
        while True:
            header = _read_header(f, size)
            if header is None:
                break
            top.append(header)
            f.seek(header[2])
        if not top or top[0][0] not in (b"ftyp", b"wide", b"free", b"skip"):
            raise Mp4Error("it does not start with an 'ftyp' box, so it is not MP4/MOV")
        kinds = [k.decode("latin-1") for k, _, _ in top]
        brand = ""
        for kind, payload, _ in top:
            if kind == b"ftyp":
                f.seek(payload)
                brand = f.read(4).decode("latin-1")
                break
        info = VideoInfo(brand=brand, top_level=kinds, duration_seconds=0.0)
        for kind, payload, box_end in top:
            if kind == b"moov":
                f.seek(payload)
                _walk(f, box_end, info, None)
        if "moov" not in kinds:
            raise Mp4Error("it has no 'moov' box (an unfinished or damaged recording)")
        return info
