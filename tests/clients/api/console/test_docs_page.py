"""/docs in a real browser: Swagger UI from the package renders every operation of the
running server's schema, with nothing fetched from another origin and nothing blocked by
the page's Content-Security-Policy. FastAPI's default page loaded Swagger UI from a CDN,
so on a server without internet it stayed blank."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest

from tests.clients.api.console.browser import launch, require_chromium
from tests.support.api_server import ServeProcess, start_serve, write_character
from tests.support.model_server import start_server_process

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("docs-page")
    model = start_server_process()
    serve = start_serve(tmp / "home", model.url, characters=[write_character(tmp / "c.yaml")])
    try:
        yield serve
    finally:
        serve.terminate()
        model.process.terminate()
        model.process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(served: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from launch(tmp_path_factory.mktemp("docs-browser"))


def test_swagger_ui_renders_the_schema_offline_under_its_policy(
    served: ServeProcess, browser: Any
) -> None:
    page = browser.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    try:
        page.goto(f"{served.url}/docs")
        page.wait_for_selector(".opblock-summary", timeout=30_000)
        text = page.inner_text("#swagger-ui")
        assert "Carrier API" in text
        assert "/v1/agents/{agent}/messages" in text and "/v1/instagram/posts" in text
        operations = page.locator(".opblock").count()
        document = httpx.get(f"{served.url}/openapi.json").json()
        expected = sum(
            1
            for item in document["paths"].values()
            for method in item
            if method in ("get", "post", "put", "delete", "patch")
        )
        assert operations == expected
    finally:
        page.close()
    origins = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert origins == {urlsplit(served.url).netloc}, requested
    assert problems == []


def test_the_docs_files_are_a_fixed_set_with_a_policy(served: ServeProcess) -> None:
    page = httpx.get(f"{served.url}/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-eval" not in policy
    assert "<script>" not in page.text  # its configuration is docs-init.js
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "docs-init.js"):
        asset = httpx.get(f"{served.url}/docs/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == policy
    for bad in ("README.txt", "LICENSE", "..%2Fconsole%2Findex.html", "docs.html"):
        missing = httpx.get(f"{served.url}/docs/assets/{bad}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    licence = Path(__file__).resolve().parents[4] / "carrier_cli" / "data" / "swagger" / "LICENSE"
    assert "Apache License" in licence.read_text()
