"""Instagram publishing costs: FTP upload throughput and the time Carrier adds to a post.

1. Upload of a 50 MB file (10 MB with --quick) to a loopback pyftpdlib server through
   Carrier's uploader (temporary name, rename, size checks, progress callback) versus a
   bare `ftplib.storbinary` with the default block size. Goal: at least 0.9 of ftplib.
2. A whole post (PNG → JPEG conversion, journal, FTP upload, HEAD check, Graph API calls)
   against local fakes, with the time spent waiting on the network (FTP, HTTP, Graph)
   measured separately: "Carrier's own time" is the rest.

    .venv/bin/python bench/instagram_bench.py           # 50 MB, 5 upload runs, 10 posts
    .venv/bin/python bench/instagram_bench.py --quick   # 10 MB, 2 upload runs, 3 posts
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def upload_bench(size_mb: int, runs: int, tmp: Path) -> None:
    from carrier_cli.clients.instagram.ftp_upload import FtpConfig, FtpUploader
    from tests.support.instagram_servers import FTP_PASSWORD, FTP_USER, start_ftp

    root = tmp / "ftp"
    root.mkdir()
    payload = tmp / "payload.bin"
    payload.write_bytes(os.urandom(size_mb * 1024 * 1024))
    size = payload.stat().st_size
    # start_ftp is the suite's generator fixture body: a context manager here.
    with contextmanager(start_ftp)(root, False, tmp) as server:

        def plain(i: int) -> None:
            ftp = ftplib.FTP()
            ftp.connect(server.host, server.port)
            ftp.login(FTP_USER, FTP_PASSWORD)
            with payload.open("rb") as f:
                ftp.storbinary(f"STOR plain-{i}.bin", f)
            ftp.quit()

        progress_calls = 0

        def on_progress(_done: int, _total: int) -> None:
            nonlocal progress_calls
            progress_calls += 1

        def carrier(i: int) -> None:
            config = FtpConfig(server.host, server.port, FTP_USER, FTP_PASSWORD, False, "/")
            FtpUploader(config).upload(payload, f"carrier-{i}.bin", on_progress)

        results: dict[str, list[float]] = {"ftplib": [], "carrier": []}
        for i in range(runs):  # interleaved, so both see the same machine load
            for name, fn in (("ftplib", plain), ("carrier", carrier)):
                start = time.perf_counter()
                fn(i)
                results[name].append(size / (time.perf_counter() - start) / 1e6)
        best = {name: max(values) for name, values in results.items()}
        median = {name: statistics.median(values) for name, values in results.items()}
        print(f"FTP upload of {size_mb} MB to 127.0.0.1 ({runs} runs each, MB/s):")
        for name in ("ftplib", "carrier"):
            print(f"  {name:8s} median {median[name]:8.1f}   best {best[name]:8.1f}")
        ratio = median["carrier"] / median["ftplib"]
        print(
            f"  carrier / ftplib (median): {ratio:.2f}  (goal >= 0.90: "
            f"{'met' if ratio >= 0.9 else 'NOT met'})"
        )
        print(f"  progress callbacks per upload: {progress_calls // runs}")


@contextmanager
def servers(tmp: Path) -> Iterator[dict[str, Any]]:
    """FTP + static HTTP + fake Graph, the same ones the test suite uses."""
    import functools
    import http.server
    import threading

    from tests.support.instagram_servers import (
        FTP_PASSWORD,
        FTP_USER,
        FakeGraph,
        start_ftp,
    )

    root = tmp / "media-root"
    root.mkdir()
    stack = ExitStack()  # start_ftp is the suite's generator fixture body
    ftp = stack.enter_context(contextmanager(start_ftp)(root, False, tmp))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    graph = FakeGraph()
    graph.quota_total = 10_000
    graph.default_statuses = ["FINISHED"]
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def start() -> None:
        from aiohttp import web

        runner = web.AppRunner(graph.build_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        graph.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    try:
        yield {
            "instagram_account_id": graph.account_id,
            "instagram_access_token": graph.token,
            "graph_api_base": graph.url,
            "ftp_server": f"{ftp.host}:{ftp.port}",
            "ftp_username": FTP_USER,
            "ftp_password": FTP_PASSWORD,
            "ftp_tls": False,
            "http_server": f"http://127.0.0.1:{httpd.server_address[1]}/",
            "instagram_poll_interval": 0.001,  # > 0 (config); default_statuses FINISHED: no wait
            "instagram_retry_delay": 0.01,
            "database_url": str(tmp / "bench.db"),
        }
    finally:
        loop.call_soon_threadsafe(loop.stop)
        httpd.shutdown()
        stack.close()


def post_bench(posts: int, tmp: Path) -> None:
    import numpy as np
    from PIL import Image

    import carrier_cli.clients.instagram.pipeline as pipeline
    from carrier_cli.clients.instagram import service
    from carrier_cli.clients.instagram.graph import GraphClient
    from carrier_cli.config import load_settings

    os.environ["CARRIER_HOME"] = str(tmp / "home")
    from carrier_cli.clients.instagram.journal import Journal

    waits: dict[str, float] = {"ftp": 0.0, "http": 0.0, "graph": 0.0}
    db_open = {"s": 0.0}
    original_open = Journal.open.__func__  # type: ignore[attr-defined]

    async def timed_open(cls: type[Journal], database_url: str | None) -> Journal:
        start = time.perf_counter()
        try:
            return await original_open(cls, database_url)  # type: ignore[no-any-return]
        finally:
            db_open["s"] += time.perf_counter() - start

    Journal.open = classmethod(timed_open)  # type: ignore[assignment, method-assign]

    def timed(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                waits[name] += time.perf_counter() - start

        return wrapper

    # Measure (not replace) the network calls: the real functions run inside the timers.
    pipeline.upload_file = timed("ftp", pipeline.upload_file)  # type: ignore[assignment]
    pipeline.check_public_url = timed("http", pipeline.check_public_url)  # type: ignore[assignment]
    GraphClient.request = timed("graph", GraphClient.request)  # type: ignore[method-assign]

    with servers(tmp) as overrides:
        settings = load_settings(overrides=overrides, use_stored_keys=False).settings
        rng = np.random.default_rng(7)
        totals, prepares, own, opens = [], [], [], []
        for i in range(posts + 1):  # the first post pays the imports and the schema creation
            pixels = rng.integers(0, 256, (1350, 1080, 3), dtype=np.uint8)
            path = tmp / f"photo-{i}.png"
            Image.fromarray(pixels, "RGB").save(path)
            for key in waits:
                waits[key] = 0.0
            db_open["s"] = 0.0
            start = time.perf_counter()
            prepared = pipeline.prepare(pipeline.PostRequest(files=[path], caption="bench"))
            prepare_s = time.perf_counter() - start
            request = pipeline.PostRequest(files=[path], caption=f"bench {i}")
            asyncio.run(service.post(settings, request))
            total = time.perf_counter() - start
            if i == 0:
                continue
            network = sum(waits.values())
            totals.append(total)
            prepares.append(prepare_s)
            own.append(total - network - 2 * prepare_s - db_open["s"])
            opens.append(db_open["s"])
            del prepared
        print(
            f"\nWhole post of a 1080x1350 PNG (random pixels, ~{path.stat().st_size / 1e6:.1f} MB)"
            f" against local fakes, {posts} posts, median ms:"
        )
        print(f"  total wall time                      {statistics.median(totals) * 1000:8.1f}")
        print(f"  validation + PNG->JPEG conversion    {statistics.median(prepares) * 1000:8.1f}")
        print(f"  opening the journal (schema check)   {statistics.median(opens) * 1000:8.1f}")
        print(
            f"  the rest of Carrier's own time       {statistics.median(own) * 1000:8.1f}"
            "  (journal writes, lease, hashing, asyncio)"
        )
        added = [o + p + d for o, p, d in zip(own, prepares, opens, strict=True)]
        print(f"  => time Carrier adds beyond network  {statistics.median(added) * 1000:8.1f}")
        print(
            f"  last post network waits: ftp {waits['ftp'] * 1000:.1f}, head "
            f"{waits['http'] * 1000:.1f}, graph {waits['graph'] * 1000:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 MB, fewer runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        upload_bench(10 if args.quick else 50, 2 if args.quick else 5, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        post_bench(3 if args.quick else 10, Path(tmp))


if __name__ == "__main__":
    main()
