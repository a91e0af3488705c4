"""What a video is (PyAV), and what Instagram would refuse about it.

Instagram accepts a Reel or a video story only as MP4/MOV with the `moov` box first,
H.264 or HEVC in 4:2:0, 23 to 60 frames per second, at most 1920 px wide, AAC audio at
48 kHz or less, mono or stereo, and within a duration and file size (graph-api.md: Reels
3 s to 15 min and 1 GB, stories 3 to 60 s and 100 MB). It says so late: the container
goes to ERROR minutes after the upload, with a vague status. `probe` reads the facts with
PyAV (FFmpeg's demuxers, so MKV, WebM or AVI are read too) and `problems` lists every
rule broken, each with the measured value and what fixes it: a remux (the streams are
fine, the container is not), a transcode, or nothing (too short: only the operator can).

PyAV is imported inside `probe`: it is the optional `video` extra, and `carrier --help`
must not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from carrier_cli.clients.instagram import mp4
from carrier_cli.errors import InputError

Fix = Literal["remux", "video", "audio", "none"]

VIDEO_CODECS = {"h264", "hevc"}
PIXEL_FORMATS = {"yuv420p", "yuvj420p"}
AUDIO_CODECS = {"aac"}
MP4_SUFFIXES = {".mp4", ".mov"}
# Containers FFmpeg reads that Carrier converts from (the suffix decides, as Instagram's
# own upload does: it is what the operator sees).
INPUT_SUFFIXES = MP4_SUFFIXES | {".m4v", ".mkv", ".webm", ".avi"}


@dataclass(frozen=True)
class VideoSpec:
    """Instagram's limits for one kind of video post."""

    label: str  # "Reel", "story video", "carousel video"
    min_seconds: float
    max_seconds: float
    max_bytes: int
    max_width: int = 1920
    min_fps: float = 23.0
    max_fps: float = 60.0
    min_ratio: float = 0.01  # width / height; Meta: 0.01:1 to 10:1 for Reels and stories
    max_ratio: float = 10.0
    max_sample_rate: int = 48_000
    max_channels: int = 2
    max_video_bitrate: int = 25_000_000  # Meta: VBR, at most 25 Mbps


@dataclass
class VideoFacts:
    path: Path
    size: int
    container: str  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"
    duration: float
    moov_first: bool | None  # None: not an MP4/MOV file
    video_codec: str | None = None
    pixel_format: str | None = None
    width: int = 0  # as displayed: the coded size turned by `rotation`
    height: int = 0
    rotation: int = 0  # degrees clockwise the player turns the frames (phones: 90)
    fps: Fraction | None = None
    video_bitrate: int | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None

    @property
    def is_mp4(self) -> bool:
        return self.path.suffix.lower() in MP4_SUFFIXES and "mp4" in self.container


@dataclass(frozen=True)
class Problem:
    text: str  # "frame rate 120 fps (needs 23 to 60)"
    fix: Fix


def _av() -> object:
    try:
        import av
    except ImportError:
        raise InputError(
            "Checking and converting videos needs PyAV, which is not installed.",
            hint="Install the video extra: pip install 'carrier[video]' (or pip install av).",
        ) from None
    return av


def probe(path: Path) -> VideoFacts:
    """The facts of a video file; InputError when FFmpeg cannot read it as one."""
    _av()
    import av

    size = path.stat().st_size
    moov_first: bool | None = None
    if path.suffix.lower() in MP4_SUFFIXES:
        try:
            moov_first = mp4.probe(path).moov_before_mdat
        except (mp4.Mp4Error, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable MP4/MOV video: {exc}.") from None
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: not a video FFmpeg can read ({exc}).") from None
    with container:
        facts = VideoFacts(
            path=path,
            size=size,
            container=container.format.name,
            duration=(container.duration or 0) / 1_000_000,
            moov_first=moov_first,
        )
        video = container.streams.video[0] if container.streams.video else None
        if video is not None:
            cc = video.codec_context
            facts.video_codec = cc.name
            facts.pixel_format = cc.format.name if cc.format is not None else None
            facts.width, facts.height = cc.width, cc.height
            facts.rotation = _rotation(container)
            if facts.rotation in (90, 270):
                facts.width, facts.height = facts.height, facts.width
            rate = video.average_rate or video.base_rate
            facts.fps = Fraction(rate) if rate else None
            facts.video_bitrate = cc.bit_rate or None
            if not facts.duration and video.duration and video.time_base:
                facts.duration = float(video.duration * video.time_base)
        audio = container.streams.audio[0] if container.streams.audio else None
        if audio is not None:
            acc = audio.codec_context
            facts.audio_codec = acc.name
            facts.sample_rate = acc.sample_rate or None
            facts.channels = acc.channels or None
    if not facts.duration and moov_first is not None:
        facts.duration = mp4.probe(path).duration_seconds
    return facts


def _rotation(container: Any) -> int:
    """The display rotation of the first frame (the MP4/MOV track matrix, as phones write
    it), clockwise in 0/90/180/270; 0 when there is none or no frame decodes."""
    import av

    try:
        frame = next(container.decode(video=0), None)
    except (av.error.FFmpegError, ValueError):
        return 0
    angle = getattr(frame, "rotation", 0) if frame is not None else 0
    if not isinstance(angle, int) or angle % 90:
        return 0  # no matrix (FFmpeg says INT_MIN) or a skew no player applies
    return -angle % 360  # FFmpeg gives it counterclockwise


def problems(facts: VideoFacts, spec: VideoSpec) -> list[Problem]:
    """Every rule the file breaks (empty: upload it as it is, byte for byte)."""
    found: list[Problem] = []
    d = facts.duration
    if not spec.min_seconds <= d <= spec.max_seconds:
        found.append(
            Problem(
                f"duration {d:.1f} s; a {spec.label} must last {spec.min_seconds:.0f} s to "
                f"{_span(spec.max_seconds)}",
                "none",
            )
        )
    if facts.size > spec.max_bytes:
        found.append(
            Problem(
                f"{facts.size / 1024**2:.1f} MiB; a {spec.label} may be at most "
                f"{spec.max_bytes / 1024**2:.0f} MiB",
                "video",
            )
        )
    if not facts.is_mp4:
        found.append(Problem(f"container {facts.container.split(',')[0]} (needs MP4)", "remux"))
    elif facts.moov_first is False:
        found.append(
            Problem(
                "the 'moov' atom comes after the media data; Instagram needs it first "
                "('fast start')",
                "remux",
            )
        )
    if facts.video_codec is None:
        found.append(Problem("it has no video track", "none"))
        return found
    if not facts.width or not facts.height or facts.fps is None:
        found.append(
            Problem("its video track has no readable frames (size or frame rate unknown)", "none")
        )
        return found
    if facts.video_codec not in VIDEO_CODECS:
        found.append(Problem(f"video codec {facts.video_codec} (needs H.264 or HEVC)", "video"))
    if facts.pixel_format not in PIXEL_FORMATS:
        found.append(Problem(f"pixel format {facts.pixel_format} (needs yuv420p)", "video"))
    fps = float(facts.fps)
    if not spec.min_fps <= fps <= spec.max_fps:
        found.append(
            Problem(
                f"frame rate {fps:.4g} fps (needs {spec.min_fps:.0f} to {spec.max_fps:.0f})",
                "video",
            )
        )
    if facts.width > spec.max_width:
        found.append(Problem(f"width {facts.width} px (at most {spec.max_width})", "video"))
    ratio = facts.width / facts.height
    if not spec.min_ratio <= ratio <= spec.max_ratio:
        found.append(
            Problem(
                f"aspect ratio {ratio:.2f}:1 (needs {spec.min_ratio:.2f} to {spec.max_ratio:.2f})",
                "video",
            )
        )
    if facts.video_bitrate and facts.video_bitrate > spec.max_video_bitrate:
        found.append(
            Problem(
                f"video bit rate {facts.video_bitrate / 1e6:.1f} Mbps (at most "
                f"{spec.max_video_bitrate / 1e6:.0f})",
                "video",
            )
        )
    if facts.audio_codec is not None:
        if facts.audio_codec not in AUDIO_CODECS:
            found.append(Problem(f"audio codec {facts.audio_codec} (needs AAC)", "audio"))
        if facts.sample_rate and facts.sample_rate > spec.max_sample_rate:
            found.append(
                Problem(
                    f"audio sample rate {facts.sample_rate} Hz (at most {spec.max_sample_rate} Hz)",
                    "audio",
                )
            )
        if facts.channels and facts.channels > spec.max_channels:
            found.append(Problem(f"{facts.channels} audio channels (mono or stereo)", "audio"))
    return found


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
