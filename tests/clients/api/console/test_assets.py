"""The console's files, without a browser: what is shipped, how it is served, and that
it needs nothing from the network (no CDN: it works offline)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carrier_cli.clients.api.routes import console

ROOT = console.ROOT
BUDGET = 300_000  # bytes of assets a browser may load (licences are not loaded)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(console.router)
    return TestClient(app)


def served_files() -> list[Path]:
    return [p for p in console.FILES.values() if "LICENSE" not in p.name]


def test_the_assets_fit_the_budget() -> None:
    total = sum(p.stat().st_size for p in served_files())
    assert total < BUDGET, f"{total:,} bytes of console assets"


def test_the_vendored_libraries_come_with_their_licences() -> None:
    vendor = ROOT / "vendor"
    assert (vendor / "marked.LICENSE.txt").read_text().startswith("# License information")
    assert "Apache License" in (vendor / "dompurify.LICENSE.txt").read_text()
    assert "marked v" in (vendor / "marked.esm.js").read_text()[:200]


def test_nothing_is_loaded_from_another_origin() -> None:
    for path in served_files():
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text(encoding="utf-8")
        for url in re.findall(r"""(?:src|href)\s*=\s*["'](https?:)?//""", text):
            raise AssertionError(f"{path.name} loads from another origin ({url})")
        assert "@import url(http" not in text


def test_every_module_import_resolves_to_a_shipped_file() -> None:
    pattern = re.compile(r"""(?:from|import)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""")
    for path in ROOT.rglob("*.js"):
        for target in pattern.findall(path.read_text(encoding="utf-8")):
            assert (path.parent / target).resolve().is_file(), f"{path.name}: {target}"


def test_the_package_data_installs_the_console() -> None:
    """`pip install .` (not only an editable install) must ship data/console/**."""
    pyproject = tomllib.loads((ROOT.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["carrier_cli"]
    assert "data/**/*" in globs


def test_the_root_redirects_and_files_carry_a_strict_policy(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    module = client.get("/console/js/main.js")
    assert module.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "path", ["/console/../pyproject.toml", "/console/%2e%2e/app.py", "/console/nope.js"]
)
def test_only_the_console_files_are_served(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404  # (the client may resolve `..` before sending)
    assert "tool.setuptools" not in answer.text and "import" not in answer.text
