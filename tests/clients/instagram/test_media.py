"""Validation and preparation of images, videos and captions (no network)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from carrier_cli.clients.instagram import captions, media, mp4
from carrier_cli.errors import InputError
from tests.clients.instagram.helpers import make_image, make_mp4
from tests.clients.instagram.videos import make_video


def prep(path: Path, tmp_path: Path, **kw: object) -> media.PreparedMedia:
    return media.prepare_one(
        path,
        fit=kw.get("fit"),
        story=bool(kw.get("story")),  # type: ignore[arg-type]
        out_dir=tmp_path / "out",
    )


def opened(m: media.PreparedMedia) -> Image.Image:
    image = Image.open(m.path)
    image.load()
    return image


def test_baseline_jpeg_within_limits_is_used_as_is(tmp_path: Path) -> None:
    path = make_image(tmp_path / "ok.jpg", (1080, 1080))
    before = path.read_bytes()
    m = prep(path, tmp_path)
    assert m.path == path and not m.converted and m.content_type == "image/jpeg"
    assert path.read_bytes() == before


def test_png_with_transparency_becomes_baseline_jpeg_original_untouched(tmp_path: Path) -> None:
    path = make_image(tmp_path / "logo.png", (600, 600), mode="RGBA", color=(255, 0, 0, 0))
    before = path.read_bytes()
    m = prep(path, tmp_path)
    assert m.converted and m.path.suffix == ".jpg" and m.path.parent == tmp_path / "out"
    image = opened(m)
    assert image.format == "JPEG" and image.mode == "RGB"
    assert not image.info.get("progressive")
    assert image.getpixel((1, 1)) == (255, 255, 255)  # transparent → white, not black
    assert path.read_bytes() == before
    assert m.source_sha256 != m.sha256 and m.remote_name.startswith("carrier-")


def test_webp_and_progressive_jpeg_are_converted(tmp_path: Path) -> None:
    webp = make_image(tmp_path / "a.webp", (640, 640), fmt="WEBP")
    prog = make_image(tmp_path / "p.jpg", (640, 640), progressive=True)
    assert opened(prep(webp, tmp_path)).format == "JPEG"
    m = prep(prog, tmp_path)
    assert m.converted and "progressive" in m.notes[0]
    assert not opened(m).info.get("progressive")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (800, 640), (10, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif.tobytes())
    m = prep(path, tmp_path)
    assert (m.width, m.height) == (640, 800)
    assert opened(m).getexif().get(0x0112, 1) == 1


def swapped_profile() -> bytes:
    """Pillow's sRGB profile with the red and blue primaries swapped (and renamed)."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", data[128:132])[0]
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    data[red + 4 : red + 12], data[blue + 4 : blue + 12] = (
        data[blue + 4 : blue + 12],
        data[red + 4 : red + 12],
    )
    return bytes(data).replace("sRGB".encode("utf-16-be"), "sBGR".encode("utf-16-be"))


def test_non_srgb_profile_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (700, 700), (255, 0, 0)).save(path, icc_profile=swapped_profile())
    m = prep(path, tmp_path)
    assert any("sRGB" in n for n in m.notes)
    image = opened(m)
    red, _green, blue = image.getpixel((350, 350))  # type: ignore[misc]
    assert blue > 200 and red < 60  # the profile said "this red is really blue"
    profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
    assert "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", "")


def test_wide_image_is_resized_to_1440(tmp_path: Path) -> None:
    m = prep(make_image(tmp_path / "big.jpg", (3000, 2000)), tmp_path)
    assert m.width == 1440 and m.height == 960


def test_small_image_is_scaled_up_to_320(tmp_path: Path) -> None:
    m = prep(make_image(tmp_path / "small.jpg", (200, 200)), tmp_path)
    assert (m.width, m.height) == (320, 320)


def test_aspect_ratio_refused_without_fit_names_file_rule_and_value(tmp_path: Path) -> None:
    path = make_image(tmp_path / "tall.jpg", (400, 1000))
    with pytest.raises(InputError) as info:
        media.prepare_all([path], fit=None, story=False, out_dir=tmp_path / "out")
    text = str(info.value)
    assert "tall.jpg" in text and "0.40" in text and "4:5" in text and "--fit" in text


@pytest.mark.parametrize("size", [(400, 1000), (3000, 1000), (1440, 1799), (321, 1000)])
@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_fit_brings_ratio_and_width_into_range(
    tmp_path: Path, size: tuple[int, int], fit: media.Fit
) -> None:
    m = prep(make_image(tmp_path / "x.png", size, fmt="PNG"), tmp_path, fit=fit)
    assert 320 <= m.width <= 1440
    assert 0.8 <= m.width / m.height <= 1.91
    assert opened(m).size == (m.width, m.height)


def test_story_keeps_tall_ratio(tmp_path: Path) -> None:
    m = prep(make_image(tmp_path / "s.jpg", (1080, 1920)), tmp_path, story=True)
    assert not m.converted


def test_unreadable_image_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.jpg: not an image"):
        prep(bad, tmp_path)
    with pytest.raises(InputError, match="file not found"):
        prep(tmp_path / "missing.jpg", tmp_path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        prep(empty, tmp_path)


def test_file_counts(tmp_path: Path) -> None:
    files = [make_image(tmp_path / f"{i}.jpg", (640, 640)) for i in range(11)]
    with pytest.raises(InputError, match="at most 10"):
        media.prepare_all(files, fit=None, story=False, out_dir=tmp_path)
    with pytest.raises(InputError, match="exactly one"):
        media.prepare_all(files[:2], fit=None, story=True, out_dir=tmp_path)
    prepared = media.prepare_all(files[:3], fit=None, story=False, out_dir=tmp_path)
    assert media.post_kind(prepared, story=False) == "carousel"


def test_every_refusal_is_reported_at_once(tmp_path: Path) -> None:
    tall = make_image(tmp_path / "tall.jpg", (400, 1000))
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    with pytest.raises(InputError) as info:
        media.prepare_all([tall, bad], fit=None, story=False, out_dir=tmp_path)
    assert "tall.jpg" in str(info.value) and "bad.png" in str(info.value)


# --- videos -------------------------------------------------------------------------------


def test_valid_reel(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=4, size=(180, 320))
    m = prep(clip, tmp_path)
    assert m.kind == "video" and m.duration == pytest.approx(4, abs=0.1) and m.width == 180
    assert m.content_type == "video/mp4" and not m.converted


def test_box_only_mp4_without_frames_is_refused(tmp_path: Path) -> None:
    """A file with the right boxes but nothing decodable: Instagram's processing would
    fail it, so it is refused before the upload, and no conversion is tried."""
    with pytest.raises(InputError, match="no readable frames"):
        prep(make_mp4(tmp_path / "clip.mp4", seconds=12), tmp_path)


def test_mp4_probe_reads_structure(tmp_path: Path) -> None:
    info = mp4.probe(make_mp4(tmp_path / "c.mov", seconds=4, width=720, brand=b"qt  "))
    assert info.brand == "qt  " and info.top_level == ["ftyp", "moov", "mdat"]
    assert info.video and info.video.codec == "avc1" and info.video.width == 720
    assert info.audio and info.audio.codec == "mp4a"


@pytest.mark.parametrize(
    ("kwargs", "story", "expected"),
    [
        ({"moov_first": False}, False, "'moov' atom comes after"),
        ({"seconds": 1.5}, False, "duration 1.5 s"),
        ({"seconds": 16 * 60}, False, "duration 960.0 s"),
        ({"seconds": 61}, True, "duration 61.0 s"),
        ({"width": 3840}, False, "frame width 3840 px"),
        ({"codec": b"vp09"}, False, "video codec 'vp09'"),
        ({"audio": b"Opus"}, False, "audio codec 'Opus'"),
    ],
)
def test_video_refusals_without_pyav(
    tmp_path: Path, kwargs: dict[str, object], story: bool, expected: str
) -> None:
    """The box-level checks used when PyAV (the `video` extra) is not installed."""
    path = make_mp4(tmp_path / "v.mp4", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError) as info:
        media.check_video(path, story=story)
    assert "v.mp4" in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "story", "expected"),
    [
        ({"seconds": 1.5}, False, "duration 1.5 s"),
        ({"seconds": 16 * 60}, False, "duration 960.0 s"),
        ({"seconds": 61}, True, "duration 61.0 s"),
    ],
)
def test_durations_no_conversion_can_fix(
    tmp_path: Path, kwargs: dict[str, object], story: bool, expected: str
) -> None:
    path = make_mp4(tmp_path / "v.mp4", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError) as info:
        prep(path, tmp_path, story=story)
    assert "v.mp4" in str(info.value) and expected in str(info.value)
    assert "No conversion can fix" in str(info.value)


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(b"\x00\x00\x00\x10abcdxxxxxxxx" * 4)
    with pytest.raises(InputError, match=r"fake\.mp4: not a readable MP4/MOV"):
        prep(path, tmp_path)


def test_story_video_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(media.STORY_VIDEO_LIMITS, "max_bytes", 1000)
    with pytest.raises(InputError, match=r"MiB; a story video may be at most"):
        prep(make_mp4(tmp_path / "s.mp4", mdat_bytes=5000), tmp_path, story=True)


# --- captions -----------------------------------------------------------------------------


def test_caption_limits() -> None:
    assert captions.check_caption("hello #one @two") == "hello #one @two"
    with pytest.raises(InputError, match="2201 characters"):
        captions.check_caption("x" * 2201)
    with pytest.raises(InputError, match="31 hashtags"):
        captions.check_caption(" ".join(f"#t{i}" for i in range(31)))
    with pytest.raises(InputError, match="21 @mentions"):
        captions.check_caption(" ".join(f"@u{i}" for i in range(21)))
    assert captions.hashtags("a#b #c ##d #e_f") == ["#c", "#e_f"]
    assert captions.mentions("me@mail.com @bob.s") == ["@bob.s"]


def test_append_hashtags_respects_existing_and_limits() -> None:
    assert captions.append_hashtags("hi #Cat", ["cat", "#dog"]) == "hi #Cat\n\n#dog"
    full = " ".join(f"#t{i}" for i in range(30))
    assert captions.append_hashtags(full, ["more"]) == full
