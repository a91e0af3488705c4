"""The name an uploaded file is stored (and shown in the journal and queue) under."""

from __future__ import annotations

import pytest

from carrier_cli.clients.api.uploads import stored_name


@pytest.mark.parametrize(
    ("sent", "suffix", "stored"),
    [
        ("quay.jpg", ".jpg", "quay.jpg"),
        ("quay.JPEG", ".jpg", "quay.jpg"),  # the suffix is what the content is
        ("photo.png", ".jpg", "photo.jpg"),
        ("../../etc/passwd", ".jpg", "passwd.jpg"),  # a path is never more than its name
        ("..\\..\\boot.ini", ".png", "boot.png"),
        (".hidden.jpg", ".jpg", "hidden.jpg"),
        ("low tide (2).jpg", ".jpg", "low-tide--2.jpg"),
        ("été.png", ".png", "t.png"),
        ("", ".mp4", "upload.mp4"),
        (None, ".mp4", "upload.mp4"),
        ("....", ".jpg", "upload.jpg"),
        ("a" * 300 + ".jpg", ".jpg", "a" * 80 + ".jpg"),
    ],
)
def test_stored_name_is_safe_and_keeps_what_it_can(
    sent: str | None, suffix: str, stored: str
) -> None:
    assert stored_name(sent, suffix) == stored
