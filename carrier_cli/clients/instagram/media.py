"""Validate and prepare media so that Instagram accepts it on the first try.

Instagram fetches the file itself and refuses it late, with terse error codes, when it
is not a baseline sRGB JPEG of the right size and shape. Everything that can be checked
or fixed locally is done here, before any network call. Originals are never modified:
converted images are written to Carrier's data directory under a name derived from
their content, so a rerun after a crash finds the same file.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from struct import error as struct_error
from typing import TYPE_CHECKING, Literal

from carrier_cli.clients.instagram import mp4
from carrier_cli.clients.instagram.hashing import file_sha256
from carrier_cli.clients.instagram.video_probe import INPUT_SUFFIXES, VideoSpec
from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

    from carrier_cli.clients.instagram.video_prepare import TranscodeReporter

Fit = Literal["pad", "crop"]
MediaKind = Literal["image", "video"]
PostKind = Literal["image", "carousel", "reel", "story"]

MAX_IMAGE_BYTES = 8 * 1024 * 1024
MIN_RATIO = 4 / 5
MAX_RATIO = 1.91
MIN_WIDTH = 320
MAX_WIDTH = 1440
MAX_CAROUSEL = 10

VIDEO_EXTENSIONS = {".mp4": "video/mp4", ".mov": "video/quicktime"}
REEL_LIMITS = {"max_bytes": 1024**3, "min_s": 3.0, "max_s": 15 * 60.0, "max_width": 1920}
STORY_VIDEO_LIMITS = {"max_bytes": 100 * 1024**2, "min_s": 3.0, "max_s": 60.0, "max_width": 1920}
VIDEO_CODECS = {"avc1", "avc3", "hvc1", "hev1"}
AUDIO_CODECS = {"mp4a"}
_PIPELINE_VERSION = "1"  # bump when the conversion changes, so old cached outputs are redone


@dataclass
class PreparedMedia:
    source: Path
    path: Path  # the file to upload: the original when it needs no change
    kind: MediaKind
    sha256: str  # of the file to upload
    size: int
    content_type: str
    width: int = 0
    height: int = 0
    duration: float | None = None
    notes: list[str] = field(default_factory=list)
    source_hash: str | None = None  # of the original, when it differs from the upload
    role: Literal["media", "cover"] = "media"  # "cover": a Reel's cover image (cover_url)

    @property
    def source_sha256(self) -> str:
        return self.source_hash or self.sha256

    @property
    def converted(self) -> bool:
        return self.path != self.source

    @property
    def remote_name(self) -> str:
        """Unique per content, so reuploads are detected and names never collide."""
        return f"carrier-{self.sha256[:24]}{self.path.suffix.lower()}"


def post_kind(media: list[PreparedMedia], *, story: bool) -> PostKind:
    if story:
        return "story"
    if len(media) > 1:
        return "carousel"
    return "reel" if media[0].kind == "video" else "image"


def check_file_count(paths: list[Path], *, story: bool) -> None:
    if not paths:
        raise InputError("No media file given.", hint="Pass one image, 2 to 10 files, or a video.")
    if story and len(paths) > 1:
        raise InputError(
            f"--story takes exactly one file; {len(paths)} were given.",
            hint="Post each story separately.",
        )
    if len(paths) > MAX_CAROUSEL:
        raise InputError(
            f"A carousel holds at most {MAX_CAROUSEL} files; {len(paths)} were given.",
            hint="Split them over several posts.",
        )


def prepare_all(
    paths: list[Path],
    *,
    fit: Fit | None,
    story: bool,
    out_dir: Path,
    transcode: bool = True,
    reporter: TranscodeReporter | None = None,
) -> list[PreparedMedia]:
    """Check and prepare every file; refuse with all problems at once (one per file)."""
    check_file_count(paths, story=story)
    prepared: list[PreparedMedia] = []
    problems: list[str] = []
    for path in paths:
        try:
            prepared.append(
                prepare_one(
                    path,
                    fit=fit,
                    story=story,
                    out_dir=out_dir,
                    transcode=transcode,
                    reporter=reporter,
                )
            )
        except InputError as exc:
            problems.append(exc.message)
    if problems:
        hint = "Fix or replace the file(s); nothing was uploaded."
        if any("aspect ratio" in p for p in problems):
            hint = (
                "Use --fit pad (adds borders) or --fit crop (cuts the edges); nothing was uploaded."
            )
        raise InputError(" ".join(problems), hint=hint)
    return prepared


def prepare_one(
    path: Path,
    *,
    fit: Fit | None,
    story: bool,
    out_dir: Path,
    transcode: bool = True,
    reporter: TranscodeReporter | None = None,
) -> PreparedMedia:
    if not path.is_file():
        raise InputError(f"{path}: file not found.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes).")
    if path.suffix.lower() in INPUT_SUFFIXES:
        if path.suffix.lower() in VIDEO_EXTENSIONS and not _have_pyav():
            return check_video(path, story=story)  # the box-level checks, without FFmpeg
        from carrier_cli.clients.instagram.video_prepare import prepare_video

        video = prepare_video(
            path, video_spec(story=story), out_dir=out_dir, transcode=transcode, reporter=reporter
        )
        return PreparedMedia(
            source=path,
            path=video.path,
            kind="video",
            sha256=video.sha256,
            size=video.size,
            content_type=VIDEO_EXTENSIONS.get(video.path.suffix.lower(), "video/mp4"),
            width=video.width,
            height=video.height,
            duration=video.duration,
            notes=video.notes,
            source_hash=video.source_hash,
        )
    return prepare_image(path, fit=fit, story=story, out_dir=out_dir)


def video_spec(*, story: bool) -> VideoSpec:
    """Instagram's limits for a video, read from the tables above at call time."""
    limits = STORY_VIDEO_LIMITS if story else REEL_LIMITS
    return VideoSpec(
        label="story video" if story else "Reel",
        min_seconds=limits["min_s"],
        max_seconds=limits["max_s"],
        max_bytes=int(limits["max_bytes"]),
        max_width=int(limits["max_width"]),
    )


def _have_pyav() -> bool:
    """PyAV is the optional `video` extra; without it MP4/MOV files get the structural
    checks of `check_video` and nothing is converted."""
    from importlib.util import find_spec

    return find_spec("av") is not None


# --- videos -------------------------------------------------------------------------------


def check_video(path: Path, *, story: bool) -> PreparedMedia:
    limits = STORY_VIDEO_LIMITS if story else REEL_LIMITS
    label = "story video" if story else "Reel"
    size = path.stat().st_size
    if size > limits["max_bytes"]:
        raise InputError(
            f"{path}: {size / 1024**2:.1f} MiB; a {label} may be at most "
            f"{limits['max_bytes'] / 1024**2:.0f} MiB."
        )
    try:
        info = mp4.probe(path)
    except (mp4.Mp4Error, OSError, struct_error) as exc:
        raise InputError(f"{path}: not a readable MP4/MOV video: {exc}.") from None
    problems = []
    if not info.moov_before_mdat:
        problems.append(
            "the 'moov' atom comes after the media data; Instagram needs it first "
            '(re-export with "fast start", e.g. ffmpeg -movflags +faststart)'
        )
    d = info.duration_seconds
    if not limits["min_s"] <= d <= limits["max_s"]:
        problems.append(
            f"duration {d:.1f} s; a {label} must last {limits['min_s']:.0f} s to "
            f"{limits['max_s']:.0f} s"
        )
    video = info.video
    if video is None:
        problems.append("it has no video track")
    else:
        if video.width > limits["max_width"]:
            problems.append(
                f"frame width {video.width:.0f} px; at most {limits['max_width']:.0f} px"
            )
        if video.codec and video.codec not in VIDEO_CODECS:
            problems.append(f"video codec '{video.codec}'; Instagram needs H.264 or HEVC")
    audio = info.audio
    if audio is not None and audio.codec and audio.codec not in AUDIO_CODECS:
        problems.append(f"audio codec '{audio.codec}'; Instagram needs AAC")
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems) + ".")
    return PreparedMedia(
        source=path,
        path=path,
        kind="video",
        sha256=file_sha256(path),
        size=size,
        content_type=VIDEO_EXTENSIONS[path.suffix.lower()],
        width=int(video.width) if video else 0,
        height=int(video.height) if video else 0,
        duration=d,
    )


# --- images -------------------------------------------------------------------------------


def _open_image(path: Path) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"{path}: not an image Carrier can read ({type(exc).__name__}: {exc}). "
            "Supported: JPEG, PNG, WebP, MPO, GIF, BMP, TIFF; videos: .mp4, .mov."
        ) from None
    return image


def _is_srgb(profile_bytes: bytes | None) -> bool:
    if not profile_bytes:
        return True
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
        description = ImageCms.getProfileDescription(profile) or ""
    except (ImageCms.PyCMSError, OSError):
        return False
    return "srgb" in description.lower().replace(" ", "")


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _ratio_ok(width: int, height: int) -> bool:
    return MIN_RATIO - 1e-9 <= width / height <= MAX_RATIO + 1e-9


def image_problems(path: Path, image: Image.Image, *, story: bool) -> list[str]:
    """Why the file cannot be uploaded as it is (empty when it can)."""
    reasons = []
    if image.format != "JPEG":
        reasons.append(f"format {image.format} (needs JPEG)")
    elif image.info.get("progressive") or image.info.get("progression"):
        reasons.append("progressive JPEG (needs baseline)")
    if image.mode != "RGB":
        reasons.append(f"colour mode {image.mode} (needs RGB)")
    if not _is_srgb(image.info.get("icc_profile")):
        reasons.append("colour profile is not sRGB")
    if _orientation(image) != 1:
        reasons.append("EXIF orientation needs applying")
    width, height = image.size
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        reasons.append(f"width {width} px (needs {MIN_WIDTH} to {MAX_WIDTH})")
    if not story and not _ratio_ok(width, height):
        reasons.append(f"aspect ratio {width / height:.2f}")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        reasons.append(f"{size / 1024**2:.1f} MiB (at most 8 MiB)")
    return reasons


def prepare_image(path: Path, *, fit: Fit | None, story: bool, out_dir: Path) -> PreparedMedia:
    image = _open_image(path)
    reasons = image_problems(path, image, story=story)
    if not reasons:
        return PreparedMedia(
            source=path,
            path=path,
            kind="image",
            sha256=file_sha256(path),
            size=path.stat().st_size,
            content_type="image/jpeg",
            width=image.size[0],
            height=image.size[1],
        )
    source_hash = file_sha256(path)
    key = hashlib.sha256(f"{source_hash}:{fit}:{story}:{_PIPELINE_VERSION}".encode()).hexdigest()
    target = out_dir / f"{key[:32]}.jpg"
    converted = convert_image(path, image, fit=fit, story=story)
    data = converted.data
    out_dir.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_bytes() != data:
        partial = target.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(data)
        partial.replace(target)
    return PreparedMedia(
        source=path,
        path=target,
        kind="image",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        content_type="image/jpeg",
        width=converted.width,
        height=converted.height,
        notes=[f"converted: {', '.join(reasons)}", *converted.notes],
        source_hash=source_hash,
    )


@dataclass
class _Converted:
    data: bytes
    width: int
    height: int
    notes: list[str]


def convert_image(path: Path, image: Image.Image, *, fit: Fit | None, story: bool) -> _Converted:
    from PIL import Image, ImageCms, ImageOps

    notes: list[str] = []
    frames = int(getattr(image, "n_frames", 1))
    if frames > 1 and image.format != "MPO":
        notes.append(f"used the first of {frames} frames")
    image.seek(0)
    profile = image.info.get("icc_profile")
    image = ImageOps.exif_transpose(image) or image
    if profile and not _is_srgb(profile):
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            srgb = ImageCms.createProfile("sRGB")
            mode = "RGBA" if image.mode in ("RGBA", "LA", "PA") else "RGB"
            if image.mode not in ("RGB", "RGBA", "CMYK", "L"):
                image = image.convert(mode)
            converted = ImageCms.profileToProfile(image, source_profile, srgb, outputMode=mode)
            image = converted or image
            notes.append("converted the colour profile to sRGB")
        except ImageCms.PyCMSError as exc:
            raise InputError(
                f"{path}: its embedded colour profile cannot be converted to sRGB ({exc})."
            ) from None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
        notes.append("flattened transparency onto white")
    elif image.mode != "RGB":
        image = image.convert("RGB")

    width, height = image.size
    if not story and not _ratio_ok(width, height):
        ratio = width / height
        if fit is None:
            raise InputError(
                f"{path}: aspect ratio {ratio:.2f}:1 ({width}x{height}) is outside Instagram's "
                f"feed range 4:5 (0.80) to 1.91:1."
            )
        image = _fit_ratio(image, fit)
        notes.append(
            f"{'padded' if fit == 'pad' else 'cropped'} from {width}x{height} "
            f"to {image.size[0]}x{image.size[1]}"
        )
    width, height = image.size
    if width > MAX_WIDTH or width < MIN_WIDTH:
        new_width = MAX_WIDTH if width > MAX_WIDTH else MIN_WIDTH
        new_height = max(1, round(height * new_width / width))
        image = image.resize((new_width, new_height), Image.Resampling.LANCZOS)
        notes.append(f"resized from {width}x{height} to {new_width}x{new_height}")
    if not story and not _ratio_ok(*image.size):
        image = _fit_ratio(image, "crop")  # rounding after the resize: a pixel at most
    return _Converted(_encode(image), image.size[0], image.size[1], notes)


def _fit_ratio(image: Image.Image, fit: Fit) -> Image.Image:
    from PIL import Image

    width, height = image.size
    ratio = width / height
    if fit == "crop":
        if ratio < MIN_RATIO:
            new_height = math.floor(width / MIN_RATIO)
            top = (height - new_height) // 2
            return image.crop((0, top, width, top + new_height))
        new_width = math.floor(height * MAX_RATIO)
        left = (width - new_width) // 2
        return image.crop((left, 0, left + new_width, height))
    if ratio < MIN_RATIO:
        new_size = (math.ceil(height * MIN_RATIO), height)
    else:
        new_size = (width, math.ceil(width / MAX_RATIO))
    canvas = Image.new("RGB", new_size, (255, 255, 255))
    canvas.paste(image, ((new_size[0] - width) // 2, (new_size[1] - height) // 2))
    return canvas


def _encode(image: Image.Image) -> bytes:
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = bytes(12)  # the creation date: zeroed so the same input gives the same file
    srgb = bytes(profile)
    for quality in (92, 85, 75, 65, 55):
        buffer = io.BytesIO()
        image.save(
            buffer,
            "JPEG",
            quality=quality,
            progressive=False,
            optimize=True,
            icc_profile=srgb,
        )
        if buffer.tell() <= MAX_IMAGE_BYTES:
            return buffer.getvalue()
    raise InputError("The converted image is still larger than 8 MiB at JPEG quality 55.")
