"""Publishing options: Meta's rules checked before any upload, journaled, sent as Meta
expects them (no network here; the end-to-end runs are in test_publish_options_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.clients.instagram import publish_options as po
from carrier_cli.errors import InputError
from tests.support.instagram_servers import option_problem


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"collaborators": ["not a name"]}, "--collaborator `not a name` is not an Instagram"),
        ({"collaborators": ["a" * 31]}, "at most 30 characters"),
        ({"collaborators": ["marina", "@Marina"]}, "the same account is named twice"),
        ({"user_tags": ["marina@0.5"]}, "--user-tag `marina@0.5`: write USER or USER@x,y"),
        ({"user_tags": ["marina@1.5,0.2"]}, "x must be a number from 0 to 1"),
        ({"user_tags": ["marina@0.5,nan"]}, "y must be a number from 0 to 1"),
        ({"user_tags": ["marina@0.5,-0.1"]}, "y must be a number from 0 to 1"),
        ({"user_tags": [f"u{i}" for i in range(21)]}, "--user-tag given 21 times"),
        ({"user_tags": ["a", "A"]}, "the same account is tagged twice"),
        ({"location_id": "Paris"}, "--location-id `Paris` is not a location id"),
        ({"cover": Path("/nonexistent/cover.jpg")}, "--cover /nonexistent/cover.jpg: file not"),
        ({"thumb_offset_ms": -1}, "--thumb-offset -1: milliseconds"),
        ({"thumb_offset_ms": 16 * 60 * 1000}, "0 to 900,000"),
        ({"audio_name": "  "}, "--audio-name: 1 to 100 characters"),
        ({"audio_name": "x" * 101}, "--audio-name: 1 to 100 characters (101 given)"),
    ],
)
def test_syntax_refusals_name_the_flag(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        po.build(**kwargs)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_cover_and_thumb_offset_exclude_each_other(tmp_path: Path) -> None:
    cover = tmp_path / "c.jpg"
    cover.write_bytes(b"x")
    with pytest.raises(InputError, match="--cover and --thumb-offset exclude each other"):
        po.build(cover=cover, thumb_offset_ms=1000)


def test_user_tag_syntax() -> None:
    assert po.parse_user_tag("@marina.sails") == po.UserTag("marina.sails")
    assert po.parse_user_tag("marina@0.25,1") == po.UserTag("marina", 0.25, 1.0)
    # Meta needs a position on an image: an untagged position is the centre.
    assert po.UserTag("m").to_param() == {"username": "m", "x": 0.5, "y": 0.5}


@pytest.mark.parametrize(
    ("kind", "kwargs", "seconds", "message"),
    [
        ("image", {"collaborators": ["a", "b", "c", "d"]}, None, "at most 3 collaborators"),
        ("reel", {"collaborators": ["a", "b", "c", "d"]}, 5.0, "a Reel takes at most 3"),
        ("carousel", {"collaborators": ["a", "b", "c", "d"]}, None, "a carousel takes at most"),
        ("story", {"collaborators": ["a"]}, None, "stories cannot have collaborators"),
        ("reel", {"user_tags": ["a"]}, 5.0, "--user-tag applies to single images and stories"),
        ("carousel", {"user_tags": ["a"]}, None, "they belong to one carousel item"),
        ("story", {"location_id": "123"}, None, "stories cannot have a location"),
        ("image", {"thumb_offset_ms": 10}, None, "--thumb-offset applies to Reels only"),
        ("story", {"share_to_feed": False}, None, "--share-to-feed/--no-share-to-feed applies"),
        ("carousel", {"audio_name": "tune"}, None, "--audio-name applies to Reels only"),
        ("reel", {"thumb_offset_ms": 5000}, 5.0, "the video lasts 5000 ms"),
    ],
)
def test_refusals_for_the_kind_of_post(
    kind: str, kwargs: dict[str, Any], seconds: float | None, message: str
) -> None:
    with pytest.raises(InputError) as info:
        po.check_for(po.build(**kwargs), kind, seconds)
    assert message in str(info.value)


def test_what_each_kind_accepts() -> None:
    three = ["a", "b", "c"]
    po.check_for(po.build(collaborators=three, location_id="1"), "carousel", None)
    po.check_for(po.build(collaborators=three, user_tags=["x@0,1"]), "image", None)
    po.check_for(po.build(user_tags=["x"]), "story", None)
    po.check_for(
        po.build(collaborators=three, thumb_offset_ms=4999, share_to_feed=False, audio_name="t"),
        "reel",
        5.0,
    )


def test_api_field_names_in_messages() -> None:
    with pytest.raises(InputError, match=r"^collaborators given 4 times"):
        po.check_for(po.build(collaborators=list("abcd"), names=po.API_FIELDS), "image", None)


def test_journal_round_trip_and_key(tmp_path: Path) -> None:
    cover = tmp_path / "c.jpg"
    cover.write_bytes(b"x")
    options = po.build(
        collaborators=["a"],
        user_tags=["t@0.1,0.2"],
        location_id="42",
        cover=cover,
        share_to_feed=False,
        audio_name="tune",
    )
    stored = json.loads(json.dumps(options.to_journal()))
    assert po.PublishOptions.from_journal(stored) == options
    assert po.PublishOptions().to_journal() == {} and po.PublishOptions().key_text() == ""
    assert "cover" not in options.key_text() and '"collaborators": ["a"]' in options.key_text()


def test_container_params_are_what_meta_reads() -> None:
    options = po.build(collaborators=["a", "b"], location_id="42", audio_name="tune")
    params = po.container_params(options, "reel", child=False, cover_url="http://x/c.jpg")
    assert params == {
        "collaborators": '["a", "b"]',
        "location_id": "42",
        "cover_url": "http://x/c.jpg",
        "audio_name": "tune",
        "share_to_feed": "true",
    }
    assert po.container_params(options, "carousel", child=True) == {}
    tags = po.container_params(po.build(user_tags=["m@0.1,0.9"]), "image", child=False)
    assert json.loads(tags["user_tags"]) == [{"username": "m", "x": 0.1, "y": 0.9}]
    off = po.container_params(po.build(share_to_feed=False, thumb_offset_ms=7), "reel", child=False)
    assert off == {"share_to_feed": "false", "thumb_offset": "7"}


@pytest.mark.parametrize(
    ("params", "media_type", "message"),
    [
        ({"collaborators": '["a","b","c","d"]'}, "IMAGE", "exceeds the limit"),
        ({"collaborators": '["a"]'}, "STORIES", "not supported"),
        ({"user_tags": '[{"username":"a","x":0.5,"y":0.5}]'}, "REELS", "not supported"),
        ({"user_tags": '[{"username":"a"}]'}, "IMAGE", "user_tags[].x"),
        ({"cover_url": "http://x"}, "IMAGE", "only supported for REELS"),
        ({"location_id": "abc"}, "IMAGE", "Invalid location_id"),
        ({"collaborators": "a,b"}, "IMAGE", "JSON array"),
    ],
)
def test_the_fake_graph_refuses_like_meta(
    params: dict[str, str], media_type: str, message: str
) -> None:
    """The fake's own checks (for a client that skipped Carrier's): code 100 errors."""
    problem = option_problem(params, media_type)
    assert problem is not None and problem["error"]["code"] == 100
    assert message in problem["error"]["message"]
    assert option_problem({"user_tags": '[{"username":"a"}]'}, "STORIES") is None
