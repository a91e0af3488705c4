"""Reading attached files: images made ready for a model, text out of documents."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from carrier_cli.runtime.attachment_files import (
    MAX_EDGE,
    extract_text,
    is_text_file,
    prepare_image,
)
from tests.clients.discord.media_files import pdf


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_a_small_png_is_sent_as_it_is() -> None:
    data = encoded(Image.new("RGB", (64, 48), "red"), "PNG")
    prepared = prepare_image(data)
    assert (prepared.data, prepared.mime, prepared.width, prepared.height) == (
        data,
        "image/png",
        64,
        48,
    )


def test_a_large_photo_is_scaled_down_but_reports_its_own_size() -> None:
    data = encoded(Image.new("RGB", (4000, 3000), "green"), "JPEG")
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height, prepared.mime) == (4000, 3000, "image/jpeg")
    with Image.open(io.BytesIO(prepared.data)) as sent:
        assert max(sent.size) == MAX_EDGE


def test_other_formats_and_animations_are_re_encoded() -> None:
    bmp = prepare_image(encoded(Image.new("RGB", (10, 10), "blue"), "BMP"))
    assert bmp.mime == "image/jpeg"
    transparent = prepare_image(encoded(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "TIFF"))
    assert transparent.mime == "image/png"
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert prepare_image(gif).mime in ("image/png", "image/jpeg")  # one still frame


def test_a_decompression_bomb_and_garbage_are_refused() -> None:
    # A PNG header claiming 50,000 x 50,000 pixels: refused before any pixel is decoded.
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    header = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    with pytest.raises(ValueError, match=r"pixels|not an image"):
        prepare_image(b"\x89PNG\r\n\x1a\n" + header)
    with pytest.raises(ValueError, match="more than 40,000,000 pixels"):  # a real one
        prepare_image(encoded(Image.new("1", (8000, 6000)), "PNG"))
    with pytest.raises(ValueError, match="not an image"):
        prepare_image(b"GIF89a but not really")


def test_documents_are_read_and_binaries_refused() -> None:
    assert extract_text(pdf("Hello from a PDF."), "a.pdf") == "Hello from a PDF."
    assert extract_text("é,1\n".encode("utf-8-sig"), "a.csv") == "é,1\n"
    with pytest.raises(ValueError, match="UTF-8"):
        extract_text(b"\xff\xfe\x00\x81", "notes.txt")
    with pytest.raises(ValueError, match="binary"):
        extract_text(b"abc\x00def", "notes.md")
    with pytest.raises(ValueError, match="PDF"):
        extract_text(b"%PDF-1.4 broken", "broken.pdf")
    assert is_text_file("notes.MD", None) and is_text_file("x", "text/plain; charset=utf-8")
    assert not is_text_file("song.mp3", "audio/mpeg")
