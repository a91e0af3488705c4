"""The scrape endpoint: served on its own thread, scraped over HTTP, closed with the run;
a port in use is an exit-2 error that names the flag."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from carrier_cli import metrics
from carrier_cli.errors import InputError
from carrier_cli.metrics.collectors import CarrierMetrics
from tests.metrics.scrape import families, value


@pytest.fixture
def on() -> Iterator[CarrierMetrics]:
    made = metrics.enable()
    try:
        yield made
    finally:
        metrics.disable()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_scrape_over_http_then_close_frees_the_port(on: CarrierMetrics) -> None:
    server = metrics.serve_metrics(0)
    try:
        on.turn_finished("Eliza", "discord", "respond", 0.5)
        response = httpx.get(server.url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == metrics.CONTENT_TYPE_HEADER
        parsed = families(response.text)
        assert value(parsed, "carrier_turns_total", decision="respond") == 1
    finally:
        server.close()
    server.close()  # idempotent
    with socket.socket() as sock:  # free again: a restarted `carrier run` can listen there
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        sock.bind(("127.0.0.1", server.port))
        sock.listen()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


def test_port_in_use_is_an_input_error_naming_the_flag(on: CarrierMetrics, busy_port: int) -> None:
    with pytest.raises(InputError) as caught:
        metrics.serve_metrics(busy_port)
    assert caught.value.exit_code == 2
    assert f"Port {busy_port} given to --metrics-port is already in use" in str(caught.value)


def test_carrier_run_with_a_busy_metrics_port_exits_2(busy_port: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "run", "--metrics-port", str(busy_port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"Port {busy_port} given to --metrics-port is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_help_names_the_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": sys.path[0]},
    )
    assert "--metrics-port" in result.stdout and "--metrics-host" in result.stdout
