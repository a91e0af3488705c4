"""The scrape endpoint of `carrier run --metrics-port`: prometheus_client's own WSGI server
on a daemon thread, so it needs nothing from the event loop the bots run on, and a busy
loop (a long turn, a slow database call) never makes a scrape time out."""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from typing import Any

from carrier_cli.errors import InputError
from carrier_cli.metrics.collectors import CarrierMetrics


@dataclass
class MetricsServer:
    httpd: Any  # wsgiref WSGIServer
    thread: threading.Thread
    host: str
    port: int  # the bound port (the one asked for, or the free one picked for 0)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(5)
        self.httpd.server_close()


def start(metrics: CarrierMetrics, port: int, host: str = "127.0.0.1") -> MetricsServer:
    from prometheus_client import start_http_server

    if not 0 <= port <= 65535:
        raise InputError(
            f"--metrics-port {port} is not a TCP port.", hint="Give a number from 1 to 65535."
        )
    try:
        httpd, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(
                f"Port {port} given to --metrics-port is already in use on {host}.",
                hint="Stop what listens there or choose another port with --metrics-port.",
            ) from None
        raise InputError(
            f"Could not serve metrics on {host}:{port} (--metrics-port): {exc.strerror or exc}.",
            hint="Choose another port with --metrics-port, or another address with --metrics-host.",
        ) from None
    return MetricsServer(httpd, thread, host, int(httpd.server_address[1]))
