"""Reading attached files: images made ready for a model (Pillow), text out of documents.

Client-neutral (the Discord client uses it; any client that downloads files can). Both
functions are CPU work on untrusted bytes: callers run them in a thread
(`asyncio.to_thread`) and have bounded the bytes before (max_image_bytes,
max_text_attachment_bytes).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

# Anthropic takes at most 5 MB per image, counted as base64: 3.75 MB of bytes. Past its
# recommended 1568 px long edge it scales the image down itself (and OpenAI to 2048 px),
# so sending more pixels costs upload time and buys nothing.
MAX_IMAGE_SEND_BYTES = 3_750_000
MAX_EDGE = 1568
# A decompression bomb (a tiny PNG declaring 50,000 x 50,000 pixels) is refused before its
# pixels are decoded: 40 megapixels is more than any phone camera takes.
MAX_PIXELS = 40_000_000
_SENDABLE = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".csv", ".pdf")


@dataclass(frozen=True)
class PreparedImage:
    data: bytes = field(repr=False)
    mime: str
    width: int  # of the image as sent by the person (before any scaling down)
    height: int


def prepare_image(data: bytes) -> PreparedImage:
    """The image as a model takes it: png/jpeg/gif/webp within MAX_EDGE and
    MAX_IMAGE_SEND_BYTES kept as they are, anything else (a 4000 px photo, a BMP or TIFF)
    scaled down and re-encoded (PNG when it has transparency, else JPEG at quality 85).
    ValueError when the bytes are not an image Pillow reads, or too many pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"{width}x{height} pixels is more than {MAX_PIXELS:,} pixels")
            mime = _SENDABLE.get(str(image.format))
            # OpenAI takes only still GIFs: an animated one is sent as its first frame.
            still = not getattr(image, "is_animated", False)
            small = max(width, height) <= MAX_EDGE and len(data) <= MAX_IMAGE_SEND_BYTES
            if mime and still and small:
                image.verify()  # a truncated file fails here, not at the provider
                return PreparedImage(data, mime, width, height)
            image.thumbnail((MAX_EDGE, MAX_EDGE))
            out = io.BytesIO()
            alpha = image.mode in ("RGBA", "LA") or (
                image.mode == "P" and "transparency" in image.info
            )
            if alpha:
                image.convert("RGBA").save(out, "PNG", optimize=True)
                mime = "image/png"
            else:
                image.convert("RGB").save(out, "JPEG", quality=85)
                mime = "image/jpeg"
            return PreparedImage(out.getvalue(), mime, width, height)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not an image Pillow can read ({type(exc).__name__})") from exc


def is_text_file(filename: str, content_type: str | None) -> bool:
    """The documents read into a turn: .txt .md .csv .pdf (or a text/* or PDF type)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return (
        filename.lower().endswith(TEXT_SUFFIXES)
        or kind.startswith("text/")
        or kind
        in (
            "application/pdf",
            "text/csv",
        )
    )


def extract_text(data: bytes, filename: str, content_type: str | None = None) -> str:
    """A document's text: PDF through pypdf (page texts joined), others as UTF-8. ValueError
    for an unreadable PDF or bytes that are not UTF-8 text (a binary renamed .txt)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if filename.lower().endswith(".pdf") or kind == "application/pdf":
        from pypdf import PdfReader

        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise ValueError("the PDF is encrypted")
            return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
        except ValueError:
            raise
        except Exception as exc:  # pypdf raises many kinds on damaged files
            raise ValueError(f"not a readable PDF ({type(exc).__name__})") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc
    if "\x00" in text:
        raise ValueError("a binary file, not text")
    return text
