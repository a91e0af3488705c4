"""Videos probed with PyAV and converted to what Instagram accepts; in-spec files untouched.

Every video is encoded here with PyAV (tests/clients/instagram/videos.py), a few seconds at
160x284, so the whole module runs in a few seconds.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.clients.instagram import media, mp4, video_probe
from carrier_cli.clients.instagram.transcode import target_fps, target_size
from carrier_cli.errors import InputError
from tests.clients.instagram.videos import make_video, rotate

REEL = media.video_spec(story=False)


def prepare(path: Path, tmp_path: Path, **kw: Any) -> media.PreparedMedia:
    return media.prepare_one(path, fit=None, story=False, out_dir=tmp_path / "out", **kw)


class Recorder:
    """A TranscodeReporter that keeps what it was told."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []
        self.updates: list[float] = []
        self.done = 0

    def transcode_progress(self, name: str, seconds: float) -> Any:
        self.started.append((name, seconds))
        return self.updates.append

    def transcode_done(self) -> None:
        self.done += 1


def test_in_spec_reel_is_uploaded_byte_identical(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "ok.mp4")
    before = clip.read_bytes()
    recorder = Recorder()
    m = prepare(clip, tmp_path, reporter=recorder)
    assert m.path == clip and not m.converted and m.notes == []
    assert clip.read_bytes() == before and m.sha256 == media.file_sha256(clip)
    assert recorder.started == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "kwargs", "problem", "how"),
    [
        ("fps15.mp4", {"fps": 15}, "frame rate 15 fps (needs 23 to 60)", "transcoded"),
        ("fps120.mp4", {"fps": 120, "seconds": 3.2}, "frame rate 120 fps", "transcoded"),
        ("mpeg4.mov", {"codec": "mpeg4"}, "video codec mpeg4 (needs H.264 or HEVC)", "transcoded"),
        (
            "vp9.mkv",
            {"codec": "libvpx-vp9", "audio": "libopus", "sample_rate": 48_000},
            "container matroska (needs MP4); video codec vp9",
            "transcoded",
        ),
        ("hi-rate.mp4", {"sample_rate": 96_000}, "audio sample rate 96000 Hz", "transcoded"),
        ("mp3.mov", {"audio": "mp3", "sample_rate": 44_100}, "audio codec mp3", "transcoded"),
        ("yuv444.mp4", {"pix_fmt": "yuv444p"}, "pixel format yuv444p", "transcoded"),
        ("slow.mp4", {"faststart": False}, "'moov' atom comes after", "remuxed"),
        ("h264.mkv", {}, "container matroska (needs MP4)", "remuxed"),
    ],
)
def test_out_of_spec_videos_are_converted_and_pass(
    tmp_path: Path, name: str, kwargs: dict[str, Any], problem: str, how: str
) -> None:
    clip = make_video(tmp_path / name, **kwargs)
    before = clip.read_bytes()
    recorder = Recorder()
    m = prepare(clip, tmp_path, reporter=recorder)
    assert m.converted and m.path.suffix == ".mp4" and m.content_type == "video/mp4"
    assert m.notes[0].startswith(f"{how}: ") and problem in m.notes[0]
    assert clip.read_bytes() == before  # the original is never modified
    out = video_probe.probe(m.path)
    assert video_probe.problems(out, REEL) == []
    assert out.video_codec == "h264" and out.pixel_format in video_probe.PIXEL_FORMATS
    assert out.moov_first and mp4.probe(m.path).top_level.index("moov") == 1  # ftyp, moov
    assert out.audio_codec == "aac" and (out.sample_rate or 0) <= 48_000
    assert 23 <= float(out.fps or 0) <= 60
    assert out.duration == pytest.approx(video_probe.probe(clip).duration, abs=0.15)
    assert recorder.started == [(name, pytest.approx(out.duration, abs=0.15))]
    assert recorder.done == 1 and recorder.updates and recorder.updates[-1] > 3
    # Prepared again (a rerun, a resume): the same cached file, not a second conversion.
    again = prepare(clip, tmp_path, reporter=Recorder())
    assert again.path == m.path and again.sha256 == m.sha256


def test_too_wide_video_is_scaled_to_1920(tmp_path: Path) -> None:
    # A thin strip keeps the encode cheap; the rule is the width alone.
    clip = make_video(tmp_path / "wide.mp4", size=(2048, 256), seconds=3.1, fps=24, audio=None)
    m = prepare(clip, tmp_path)
    assert (m.width, m.height) == (1920, 240) and "width 2048 px" in m.notes[0]


def test_no_transcode_refuses_with_every_problem(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "bad.mkv", codec="mpeg4", fps=15, sample_rate=96_000)
    with pytest.raises(InputError) as info:
        prepare(clip, tmp_path, transcode=False)
    text = str(info.value)
    for problem in ("container matroska", "video codec mpeg4", "15 fps", "96000 Hz"):
        assert problem in text
    assert "without --no-transcode" in text and not (tmp_path / "out").exists()


def test_too_short_is_refused_even_with_transcoding(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "short.mp4", seconds=1.0, fps=15)
    with pytest.raises(InputError, match=r"duration 1\.0 s; a Reel must last 3 s to 15 min"):
        prepare(clip, tmp_path)


def test_story_video_limit(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "s.mp4", seconds=3.5)
    assert media.prepare_one(clip, fit=None, story=True, out_dir=tmp_path).path == clip


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.mkv"
    path.write_bytes(b"\x1a\x45\xdf\xa3" + b"garbage" * 20)
    with pytest.raises(InputError, match="not a video FFmpeg can read"):
        prepare(path, tmp_path)


def test_targets() -> None:
    assert target_fps(Fraction(120), REEL) == 60
    assert target_fps(Fraction(100), REEL) == 50
    assert target_fps(Fraction(240), REEL) == 60
    assert target_fps(Fraction(15), REEL) == 30
    assert target_fps(Fraction(30000, 1001), REEL) == Fraction(30000, 1001)
    assert target_size(3840, 2160, REEL) == (1920, 1080, 1920, 1080)
    assert target_size(2001, 101, REEL)[2:] == (1920, 192)  # 19:1 padded to 10:1


def test_a_rotated_phone_clip_in_spec_is_left_alone(tmp_path: Path) -> None:
    clip = rotate(make_video(tmp_path / "phone.mp4", size=(284, 160)), 90)
    before = clip.read_bytes()
    facts = video_probe.probe(clip)
    assert (facts.width, facts.height, facts.rotation) == (160, 284, 90)  # as displayed
    m = prepare(clip, tmp_path)
    assert m.path == clip and (m.width, m.height) == (160, 284) and clip.read_bytes() == before


@pytest.mark.parametrize("degrees", [90, 270])
def test_a_rotated_clip_is_turned_upright_when_transcoded(tmp_path: Path, degrees: int) -> None:
    """The converted file has no rotation matrix, so its frames must be upright: the
    source's red gradient runs along the coded width, so upright it runs down the rows."""
    import av
    import numpy as np

    clip = rotate(make_video(tmp_path / "phone.mp4", size=(284, 160), fps=15), degrees)
    m = prepare(clip, tmp_path)
    out = video_probe.probe(m.path)
    assert (out.width, out.height, out.rotation) == (160, 284, 0)
    with av.open(str(m.path)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    red = frame[:, :, 0].astype(np.int16)
    assert frame.shape[:2] == (284, 160)
    down_rows = np.abs(np.diff(red, axis=0)).mean()
    across = np.abs(np.diff(red, axis=1)).mean()
    assert down_rows > 5 * across, (down_rows, across)
    # Which way round (as ffmpeg's autorotate turns it): 90 puts the coded left edge on
    # top (red rising down the rows), 270 puts it at the bottom.
    upper, lower = red[40:50].mean(), red[140:150].mean()
    assert (upper < lower) if degrees == 90 else (upper > lower), (upper, lower)


def test_remuxing_keeps_the_rotation(tmp_path: Path) -> None:
    clip = rotate(make_video(tmp_path / "phone.mp4", size=(284, 160), faststart=False), 90)
    m = prepare(clip, tmp_path)
    assert m.notes[0].startswith("remuxed") and video_probe.probe(m.path).rotation == 90
