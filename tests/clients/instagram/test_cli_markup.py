"""A Graph API error and a model-written caption are printed literally by `carrier
instagram`: Rich markup (`[bold]`, a stray `[/]`, `[link=...]`) and emoji codes (`:x:`) in
them are neither applied nor fatal (real subprocesses, the fake Graph API, the fake model
server through the real openai SDK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.instagram.cli_helpers import carrier
from tests.clients.instagram.helpers import make_image
from tests.clients.instagram.test_autopost import model_env, write_character
from tests.support.instagram_servers import InstagramEnv
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]

EVIL = "[/] [bold]b[/] :x: [link=https://evil]l[/link]"  # a stray [/] first
WIDE = {"COLUMNS": "200"}


def _flat(text: str) -> str:
    """Output with line wrapping, table borders and panel borders undone."""
    for border in "│┃":
        text = text.replace(border, " ")
    return " ".join(text.split())


def test_graph_error_in_the_post_error_and_the_status(
    instagram_env: InstagramEnv, tmp_path: Path
) -> None:
    instagram_env.graph.fail_next("media", 100, None, message=f"Refused {EVIL}")
    make_image(tmp_path / "p.jpg", (800, 800))
    post = carrier("instagram", "post", "p.jpg", "--caption", "x", cwd=tmp_path, extra_env=WIDE)
    assert post.returncode != 0
    assert f"Refused {EVIL}" in _flat(post.stderr), post.stderr
    status = carrier("instagram", "status", "1", cwd=tmp_path, extra_env=WIDE)
    assert f"Refused {EVIL}" in _flat(status.stdout), status.stdout
    # The history table cuts the error at 80 characters, before the markup; it must still
    # print (a `[/]` cut in half must not raise MarkupError).
    history = carrier("instagram", "history", cwd=tmp_path, extra_env=WIDE)
    assert history.returncode == 0 and "failed" in history.stdout, history.stderr
    assert "❌" not in post.stderr + status.stdout and "Traceback" not in history.stderr


def test_generated_caption_is_shown_literally(
    instagram_env: InstagramEnv,
    model_server_process: ModelServerProcess,
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    make_image(media / "a.png", (800, 800))
    character = write_character(tmp_path / "marina.yaml", media, hashtags="[sea]")
    model_server_process.push(
        "<response><thought>harbour</thought><actions>REPLY</actions>"
        f"<text>Harbour {EVIL}</text></response>"
    )
    args = ["instagram", "post", str(media / "a.png"), "--generate-caption", "--yes"]
    result = carrier(
        *args,
        "--character",
        str(character),
        cwd=tmp_path,
        extra_env={**model_env(model_server_process), **WIDE},
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert f"Harbour {EVIL}" in _flat(result.stderr), result.stderr
    assert "❌" not in result.stderr
    [published] = instagram_env.graph.published
    assert published["caption"].startswith(f"Harbour {EVIL}")
