"""FTP/FTPS upload against a real pyftpdlib server, and the public-URL check over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carrier_cli.clients.instagram.ftp_upload import FtpConfig, FtpUploader
from carrier_cli.clients.instagram.http_check import check_public_url
from carrier_cli.clients.instagram.options import FtpOptions
from carrier_cli.config import load_settings
from carrier_cli.errors import ConfigError, RuntimeFailure
from tests.clients.instagram.helpers import ftp_config
from tests.support.instagram_servers import (
    FTP_PASSWORD,
    FTP_USER,
    FtpServerHandle,
    HttpServerHandle,
)


def config(server: FtpServerHandle, **kw: object) -> FtpConfig:
    login = {"username": FTP_USER, "password": FTP_PASSWORD}
    return ftp_config({"host": server.host, "port": server.port, **login}, **kw)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return path


def test_plain_ftp_upload_renames_and_verifies(ftp_server: FtpServerHandle, payload: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = FtpUploader(config(ftp_server)).upload(
        payload, "carrier-abc.jpg", lambda d, t: seen.append((d, t))
    )
    assert (ftp_server.root / "carrier-abc.jpg").read_bytes() == payload.read_bytes()
    assert not (ftp_server.root / ".carrier-abc.jpg.part").exists()
    assert result.remote_path == "/carrier-abc.jpg" and not result.tls and not result.skipped
    assert seen[-1] == (payload.stat().st_size, payload.stat().st_size)
    # A second upload of the same content is recognised and skipped.
    again = FtpUploader(config(ftp_server)).upload(payload, "carrier-abc.jpg")
    assert again.skipped


def test_ftps_is_used_when_offered(
    ftps_server: FtpServerHandle, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps_server.ca_file))
    result = FtpUploader(config(ftps_server)).upload(payload, "carrier-tls.jpg")
    assert result.tls
    assert (ftps_server.root / "carrier-tls.jpg").stat().st_size == payload.stat().st_size


def test_ftps_with_untrusted_certificate_is_explained(
    ftps_server: FtpServerHandle, payload: Path
) -> None:
    with pytest.raises(RuntimeFailure, match="certificate") as info:
        FtpUploader(config(ftps_server)).upload(payload, "x.jpg")
    assert "FTP_TLS=false" in str(info.value)


def test_tls_required_but_not_offered(ftp_server: FtpServerHandle, payload: Path) -> None:
    with pytest.raises(ConfigError, match="refused AUTH TLS"):
        FtpUploader(config(ftp_server, tls=True)).upload(payload, "x.jpg")


def test_bad_password_names_the_settings(ftp_server: FtpServerHandle, payload: Path) -> None:
    with pytest.raises(ConfigError) as info:
        FtpUploader(config(ftp_server, password="wrong-password")).upload(payload, "x.jpg")
    assert "FTP_PASSWORD" in str(info.value) and "wrong-password" not in str(info.value)


def test_missing_directory(ftp_server: FtpServerHandle, payload: Path) -> None:
    with pytest.raises(ConfigError, match="FTP_DIRECTORY `/nope`"):
        FtpUploader(config(ftp_server, directory="/nope")).upload(payload, "x.jpg")


@pytest.mark.parametrize("tls", [False, True])
def test_dropped_connection_resumes_with_rest(
    request: pytest.FixtureRequest, tls: bool, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: FtpServerHandle = request.getfixturevalue("ftps_server" if tls else "ftp_server")
    if tls:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    server.drop_next_upload_after(1024 * 1024)
    result = FtpUploader(config(server), backoff=0.01).upload(payload, "carrier-resume.bin")
    assert server.control["drops"] == 1
    assert result.attempts == 2 and result.resumed_from >= 1024 * 1024
    assert (server.root / "carrier-resume.bin").read_bytes() == payload.read_bytes()


def test_unreachable_server_fails_after_retries(tmp_path: Path, payload: Path) -> None:
    import socket

    # Bound but never listening for the whole test: connecting is refused, and no other
    # server can be given the port meanwhile (as it could once the socket was closed).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        cfg = FtpConfig("127.0.0.1", port, "u", "p", None, "/", 2.0)
        with pytest.raises(RuntimeFailure, match="failed after 3 attempts"):
            FtpUploader(cfg, retries=2, backoff=0.01).upload(payload, "x.bin")


def test_config_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_SERVER", "files.example.com:2121")
    monkeypatch.setenv("FTP_TLS", "true")
    cfg = FtpConfig.from_options(FtpOptions.from_settings(load_settings().settings))
    assert (cfg.host, cfg.port, cfg.tls) == ("files.example.com", 2121, True)
    monkeypatch.delenv("FTP_SERVER")
    with pytest.raises(ConfigError, match="FTP_SERVER is not set"):
        FtpConfig.from_options(FtpOptions.from_settings(load_settings().settings))


# --- HTTP HEAD check --------------------------------------------------------------------------


async def test_head_check_accepts_served_image(media_http_server: HttpServerHandle) -> None:
    (media_http_server.root / "a.jpg").write_bytes(b"\xff\xd8" + b"0" * 100)
    ctype = await check_public_url(
        media_http_server.url + "a.jpg", expected_size=102, kind="image", retries=0
    )
    assert ctype == "image/jpeg"
    assert ("HEAD", "/a.jpg") in media_http_server.requests


async def test_head_check_missing_file_explains(media_http_server: HttpServerHandle) -> None:
    with pytest.raises(RuntimeFailure, match="HTTP 404") as info:
        await check_public_url(
            media_http_server.url + "missing.jpg",
            expected_size=1,
            kind="image",
            retries=1,
            backoff=0.01,
        )
    assert "HTTP_SERVER" in str(info.value)


async def test_head_check_wrong_content_type(media_http_server: HttpServerHandle) -> None:
    (media_http_server.root / "a.txt").write_text("hello")
    with pytest.raises(ConfigError, match="as `text/plain`"):
        await check_public_url(
            media_http_server.url + "a.txt", expected_size=5, kind="image", retries=0
        )


async def test_head_check_unreachable() -> None:
    with pytest.raises(RuntimeFailure, match="could not connect"):
        await check_public_url(
            "http://127.0.0.1:9/x.jpg", expected_size=1, kind="image", retries=1, backoff=0.01
        )


async def test_head_check_redirect_is_refused(media_http_server: HttpServerHandle) -> None:
    (media_http_server.root / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"redirect \(301\)"):
        await check_public_url(
            media_http_server.url + "folder", expected_size=1, kind="image", retries=0
        )


def test_the_password_is_not_in_the_config_repr() -> None:
    """A FtpConfig lands in log lines and --debug tracebacks (locals, f-strings)."""
    config = FtpConfig(
        host="ftp.example", port=21, username="bot", password="hunter2-ftp-secret", tls=None
    )
    assert "hunter2-ftp-secret" not in repr(config)
    assert "bot" in repr(config)
