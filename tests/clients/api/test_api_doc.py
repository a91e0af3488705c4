"""docs/api.md stays true: every `sh` block in it runs, in order, against a real
`carrier serve` (with curl, as a reader would), and so does the curl line the server's
banner prints on a fresh home.

The blocks run and are checked by tests/support/doc_runner.py: strict curl (an example
answering 4xx/5xx fails), `expect-error` markers (our error shape instead), and every
shown answer (`# {...}`) names only keys some answer its block printed has. The test
provides CARRIER_URL and CARRIER_KEY itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.clients.api.serve_support import model_server, serving
from tests.support.api_server import ROOT, ServeProcess, serve_env
from tests.support.doc_runner import DocBlock, check_block, doc_blocks, missing_examples, run_script
from tests.support.model_server import ModelServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.service,
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq"
    ),
]

DOC = ROOT / "docs" / "api.md"
# The doc's server loads the file plugin (tests/support/file_plugin.py), and a block after
# `<!-- model-actions: SHOW_REPORT -->` gets a model that chooses that action (after REPLY).
PLUGIN_EXTRA = (
    'plugins: ["tests.support.file_plugin:PLUGIN"]\n'
    "settings:\n  fact_interval: 1000000\n"  # no fact calls take the scripted reply
)
_PRELUDE = """
carrier() { "$CARRIER_PYTHON" -m carrier_cli "$@"; }
"""


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(
    model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("api-doc")
    with serving(root, model, character_extra=PLUGIN_EXTRA) as server:
        yield server


def run_block(
    body: str, served: ServeProcess, model: ModelServerProcess, *, strict: bool
) -> subprocess.CompletedProcess[str]:
    env = serve_env(served.home, model.url)
    env.update(
        {
            "CARRIER_URL": served.url,
            "CARRIER_KEY": served.key or "",
            "CARRIER_PYTHON": sys.executable,
        }
    )
    return run_script(_PRELUDE + body, env, served.home.parent, strict=strict)


def test_the_doc_has_examples_for_every_endpoint(served: ServeProcess) -> None:
    """Each path the server documents (but the WebSocket and Instagram's own page) appears
    in a runnable example."""
    import httpx2 as httpx

    paths = httpx.get(served.url + "/openapi.json", timeout=30).json()["paths"]

    def here(path: str) -> bool:  # their own pages: test_api_instagram_doc.py, test_ws.py
        return not path.startswith(("/v1/instagram/posts", "/v1/instagram/queue", "/v1/ws"))

    missing = missing_examples(paths, doc_blocks(DOC), here)
    assert not missing, f"docs/api.md has no runnable example for {missing}"


@pytest.mark.parametrize("block", doc_blocks(DOC), ids=str)
def test_doc_example_runs(block: DocBlock, served: ServeProcess, model: ModelServerProcess) -> None:
    if block.action is not None:
        from tests.support.file_plugin import reply_choosing

        model.push(reply_choosing(block.action))
    done = run_block(block.body, served, model, strict=not block.expects_error)
    check_block("docs/api.md", block, done)


def test_banner_curl_line_answers_with_the_reply(
    served: ServeProcess, model: ModelServerProcess
) -> None:
    """What a new user copies first: the curl line printed with the first key."""
    line = next(x.strip() for x in served.stdout_lines if x.strip().startswith("curl "))
    done = run_block(line, served, model, strict=True)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reply"]["text"], answer
    assert answer["room"]["key"] == "r1"
