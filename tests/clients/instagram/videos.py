"""Real, decodable videos encoded in the test with PyAV (no binary fixtures).

Small on purpose: 160x284 (9:16) or so, a few seconds, a moving gradient so encoders have
something to do, and a sine tone for audio. Encoding one costs 50-200 ms.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np


def make_video(
    path: Path,
    *,
    seconds: float = 3.5,
    fps: int = 30,
    size: tuple[int, int] = (160, 284),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: str | None = "aac",
    sample_rate: int = 44_100,
    faststart: bool = True,
    container: str | None = None,
) -> Path:
    """Encode `seconds` of video at `fps` with `codec` (and `audio`, None: no track) into
    `path`; the container follows the suffix (.mp4, .mov, .mkv, .webm) unless given."""
    import av

    width, height = size
    options = {"movflags": "+faststart"} if faststart and path.suffix in (".mp4", ".mov") else {}
    opened: Any = av.open(str(path), "w", format=container, options=options)
    with opened as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = pix_fmt
        if codec == "libx264":
            video.options = {"preset": "ultrafast"}
        sound = None
        if audio is not None:
            sound = out.add_stream(audio, rate=sample_rate, layout="stereo")
        frames = round(seconds * fps)
        xs = np.arange(width, dtype=np.uint16)
        for index in range(frames):
            row = ((xs + index * 4) % 256).astype(np.uint8)
            rgb = np.empty((height, width, 3), dtype=np.uint8)
            rgb[:, :, 0] = row
            rgb[:, :, 1] = 128
            rgb[:, :, 2] = (index * 8) % 256
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            fmt = sound.codec_context.format.name if sound.codec_context.format else "fltp"
            chunk = 1024
            total = int(seconds * sample_rate)
            t = 0
            while t < total:
                n = min(chunk, total - t)
                tone = np.sin(2 * np.pi * 440 * (np.arange(t, t + n) / sample_rate))
                samples = np.stack([tone, tone]).astype(np.float32)
                piece = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                piece.sample_rate = sample_rate
                piece.pts = t
                piece.time_base = Fraction(1, sample_rate)
                if fmt != "fltp":
                    for converted in av.AudioResampler(
                        format=fmt, layout="stereo", rate=sample_rate
                    ).resample(piece):
                        out.mux(sound.encode(converted))
                else:
                    out.mux(sound.encode(piece))
                t += n
            out.mux(sound.encode(None))
    return path


def rotate(path: Path, degrees: int) -> Path:
    """Mark the first track as turned `degrees` clockwise for display, the way phones
    write portrait clips: the tkhd matrix (version 0 box: the matrix is 40 bytes into it)."""
    import struct

    matrices = {
        90: (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000),
        180: (-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000),
        270: (0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000),
    }
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0, "expected a version 0 tkhd box"
    data[at + 44 : at + 80] = struct.pack(">9i", *matrices[degrees])
    path.write_bytes(bytes(data))
    return path
