"""`service.post_request`: the post rules the `carrier instagram post` command used to hold
itself. Pure: no files are read, no network is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.clients.instagram.pipeline import PostRequest
from carrier_cli.clients.instagram.service import post_request
from carrier_cli.errors import InputError

FILES = [Path("photo.jpg")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"caption": "hi", "fit": "stretch"}, "--fit `stretch`: use pad or crop."),
        (
            {"caption": "hi", "generate_caption": True},
            "--caption and --generate-caption exclude each other; pick one.",
        ),
        (
            {"caption": None, "generate_caption": True, "story": True},
            "--generate-caption does not apply to --story: stories have no caption.",
        ),
        (
            {"caption": None},
            "No caption: pass --caption TEXT, or --generate-caption to let the character "
            'write it (--caption "" posts without one).',
        ),
    ],
)
def test_contradictions_are_refused_with_the_flag_names(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as info:
        post_request(FILES, **options)  # type: ignore[arg-type]
    assert info.value.message == message
    assert info.value.exit_code == 2


def test_a_story_drops_its_caption_with_a_warning() -> None:
    warnings: list[str] = []
    request = post_request(FILES, caption="hello", story=True, warn=warnings.append)
    assert request.caption == "" and request.story
    assert warnings == ["Stories have no caption on Instagram; --caption is ignored for --story."]
    assert post_request(FILES, caption=None, story=True, warn=warnings.append).caption == ""
    assert len(warnings) == 1  # no caption given: nothing to warn about


def test_the_options_become_the_request() -> None:
    options = {
        "alt_text": "a cat",
        "fit": "pad",
        "force": True,
        "cleanup": True,
        "character": "Ada",
    }
    request = post_request(FILES, caption="hi", **options)  # type: ignore[arg-type]
    assert request == PostRequest(files=FILES, caption="hi", **options)  # type: ignore[arg-type]
    assert post_request(FILES, caption=None, generate_caption=True).caption == ""
    assert post_request(FILES, caption="").caption == ""
