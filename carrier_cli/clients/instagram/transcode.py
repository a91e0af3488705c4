"""Turn an out-of-spec video into an MP4 that Instagram accepts (PyAV).

The output is H.264 (yuv420p, constant frame rate, at most 1920 px wide, the aspect ratio
padded into range) and AAC (at most 48 kHz, mono or stereo) in an MP4 whose `moov` box
comes first (`movflags=+faststart`). A stream that is already right is copied, not
re-encoded: a file whose only fault is its container (an MKV of H.264 + AAC, or an MP4
without fast start) is remuxed in seconds, with no loss.

Quality: x264 `crf 20` (visually transparent for phone footage), `preset veryfast`
(about 3x real time for 1080p on one core), capped at 8 Mbps (and lower when the file
size limit needs it: a 60 s story fits 100 MB at 12 Mbps) with a 2 s VBV buffer, so a
grainy clip cannot blow the file size limit.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from carrier_cli.clients.instagram.video_probe import Problem, VideoFacts, VideoSpec
from carrier_cli.errors import InputError

# Called with the seconds of video converted so far (of `VideoFacts.duration`).
Progress = Callable[[float], None]

MAX_VIDEO_BITRATE = 8_000_000
AUDIO_BITRATE = 128_000  # Meta recommends 128 kbps AAC
CRF = "20"
PRESET = "veryfast"


def target_fps(fps: Fraction | None, spec: VideoSpec) -> Fraction:
    """The source rate when allowed; above the range the largest divisor of it that fits
    (120 -> 60, 100 -> 50), so frames are dropped evenly; below it 30."""
    if fps is not None and spec.min_fps <= fps <= spec.max_fps:
        return fps
    if fps is not None and fps > spec.max_fps:
        for divisor in range(2, 10):
            candidate = fps / divisor
            if spec.min_fps <= candidate <= spec.max_fps:
                return candidate
        return Fraction(int(spec.max_fps))
    return Fraction(30)


def target_size(width: int, height: int, spec: VideoSpec) -> tuple[int, int, int, int]:
    """(scaled width, scaled height, padded width, padded height), all even (4:2:0)."""
    scale = min(1.0, spec.max_width / width)
    w, h = _even(width * scale), _even(height * scale)
    pw, ph = w, h
    if w / h > spec.max_ratio:
        ph = _even(math.ceil(w / spec.max_ratio))
    elif w / h < spec.min_ratio:
        pw = _even(math.ceil(h * spec.min_ratio))
    return w, h, pw, ph


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def video_bitrate(facts: VideoFacts, spec: VideoSpec) -> int:
    """The cap: 8 Mbps, or less when the size limit needs it (90 % of it, audio aside)."""
    if facts.duration <= 0:
        return MAX_VIDEO_BITRATE
    budget = spec.max_bytes * 8 * 0.9 / facts.duration - AUDIO_BITRATE
    return int(max(500_000, min(MAX_VIDEO_BITRATE, budget)))


def convert(
    facts: VideoFacts,
    found: list[Problem],
    spec: VideoSpec,
    target: Path,
    *,
    progress: Progress | None = None,
) -> None:
    """Write the compliant MP4 to `target` (through a partial file renamed at the end, so
    `target` only ever holds a whole video)."""
    import av

    fixes = {p.fix for p in found}
    encode_video = "video" in fixes
    encode_audio = "audio" in fixes
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            av.open(str(facts.path)) as source,
            av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            _Conversion(source, out, facts, spec, encode_video, encode_audio).run(progress)
        partial.replace(target)
    except av.error.FFmpegError as exc:
        raise InputError(
            f"{facts.path}: converting it for Instagram failed ({exc}); problems: "
            + "; ".join(p.text for p in found)
            + ".",
            hint="Export it again as MP4 (H.264 + AAC, 30 fps) with your video editor.",
        ) from None
    finally:
        partial.unlink(missing_ok=True)


class _Conversion:
    """One pass over the source: each packet copied, or decoded, filtered and encoded."""

    def __init__(
        self,
        source: Any,
        out: Any,
        facts: VideoFacts,
        spec: VideoSpec,
        encode_video: bool,
        encode_audio: bool,
    ) -> None:
        import av

        self.av = av
        self.out = out
        self.facts = facts
        self.in_video = source.streams.video[0]
        self.in_audio = source.streams.audio[0] if source.streams.audio else None
        self.source = source
        self.encode_video = encode_video
        self.encode_audio = encode_audio
        self.graph: Any = None
        if encode_video:
            fps = target_fps(facts.fps, spec)
            w, h, pw, ph = target_size(facts.width, facts.height, spec)
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height = pw, ph
            stream.pix_fmt = "yuv420p"
            rate = video_bitrate(facts, spec)
            stream.options = {
                "crf": CRF,
                "preset": PRESET,
                "maxrate": str(rate),
                "bufsize": str(rate * 2),
                "profile": "high",
            }
            stream.codec_context.time_base = Fraction(1) / fps
            self.video_out = stream
            self.fps = fps
            self._build_graph(w, h, pw, ph, fps)
        else:
            self.video_out = out.add_stream_from_template(self.in_video)
        self.audio_out: Any = None
        if self.in_audio is not None:
            if encode_audio:
                rate = min(self.in_audio.codec_context.sample_rate or 48_000, spec.max_sample_rate)
                layout = "mono" if (self.in_audio.codec_context.channels or 2) == 1 else "stereo"
                stream = out.add_stream("aac", rate=rate, layout=layout)
                stream.bit_rate = AUDIO_BITRATE
                self.audio_out = stream
                self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
                self.audio_samples = 0
                self.audio_rate = rate
            else:
                self.audio_out = out.add_stream_from_template(self.in_audio)

    def _build_graph(self, w: int, h: int, pw: int, ph: int, fps: Fraction) -> None:
        graph = self.av.filter.Graph()
        chain = [graph.add_buffer(template=self.in_video)]
        # Turned upright as the player would (what ffmpeg's autorotate does): the output
        # carries no rotation matrix, so an unturned phone clip would play sideways.
        turn = {90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}
        for step in turn.get(self.facts.rotation, []):
            name, _, args = step.partition("=")
            chain.append(graph.add(name, args or None))
        chain.append(graph.add("fps", f"fps={fps.numerator}/{fps.denominator}"))
        chain.append(graph.add("scale", f"{w}:{h}"))
        if (pw, ph) != (w, h):
            chain.append(graph.add("pad", f"{pw}:{ph}:(ow-iw)/2:(oh-ih)/2:black"))
        chain.append(graph.add("format", "yuv420p"))
        chain.append(graph.add("buffersink"))
        for a, b in itertools.pairwise(chain):
            a.link_to(b)
        graph.configure()
        self.graph = graph
        self.frames_out = 0

    def run(self, progress: Progress | None) -> None:
        streams = [s for s in (self.in_video, self.in_audio) if s is not None]
        last_report = -1.0
        for packet in self.source.demux(streams):
            if packet.stream is self.in_video:
                if self.encode_video:
                    for frame in packet.decode():
                        self._video_frame(frame)
                        time = frame.time
                        if progress is not None and time is not None and time - last_report >= 0.5:
                            last_report = time
                            progress(min(time, self.facts.duration))
                elif packet.dts is not None:
                    packet.stream = self.video_out
                    self.out.mux(packet)
                    if progress is not None and packet.pts is not None and packet.time_base:
                        progress(min(float(packet.pts * packet.time_base), self.facts.duration))
            elif self.encode_audio:
                for frame in packet.decode():
                    self._audio_frame(frame)
            elif packet.dts is not None:
                packet.stream = self.audio_out
                self.out.mux(packet)
        if self.encode_video:
            self._video_frame(None)
            self.out.mux(self.video_out.encode(None))
        if self.encode_audio and self.audio_out is not None:
            self._audio_frame(None)
            self.out.mux(self.audio_out.encode(None))
        if progress is not None:
            progress(self.facts.duration)

    def _video_frame(self, frame: Any) -> None:
        self.graph.push(frame)
        while True:
            try:
                filtered = self.graph.pull()
            except (self.av.error.BlockingIOError, self.av.error.EOFError):
                return
            filtered.pts = self.frames_out
            filtered.time_base = self.video_out.codec_context.time_base
            self.frames_out += 1
            self.out.mux(self.video_out.encode(filtered))

    def _audio_frame(self, frame: Any) -> None:
        for resampled in self.resampler.resample(frame):
            resampled.pts = self.audio_samples
            resampled.time_base = Fraction(1, self.audio_rate)
            self.audio_samples += resampled.samples
            self.out.mux(self.audio_out.encode(resampled))
