"""`carrier_cli.text`: the one clipping helper the previews share."""

from __future__ import annotations

import pytest

from carrier_cli.text import clip, one_line


@pytest.mark.parametrize("width", [1, 2, 5, 10, 40])
@pytest.mark.parametrize("text", ["", "short", "a  b\n\tc   d " * 7, "x" * 100])
def test_one_line_is_what_each_preview_wrote_by_hand(text: str, width: int) -> None:
    flat = " ".join(text.split())
    assert one_line(text, width) == (flat if len(flat) <= width else flat[: width - 1] + "…")


@pytest.mark.parametrize("text", ["", "a" * 40, "b" * 41, "c" * 100])
def test_clip_with_another_ellipsis_keeps_the_width(text: str) -> None:
    # character.checks.describe: 40 characters at most, "..." included.
    expected = text if len(text) <= 40 else text[:37] + "..."
    assert clip(text, 40, ellipsis="...") == expected


def test_clip_can_drop_the_space_the_cut_leaves() -> None:
    assert clip("one two three", 9) == "one two …"
    assert clip("one two three", 9, rstrip=True) == "one two…"
    assert clip("fits", 4, rstrip=True) == "fits"
