"""Uploads against real FTP daemons as Debian ships them: vsftpd and pure-ftpd.

pyftpdlib (the other FTP tests) does not require TLS session reuse on data connections;
vsftpd does by default (`require_ssl_reuse=YES`), and before Carrier resumed the control
connection's TLS session every FTPS upload to it failed with `522 SSL connection failed:
session reuse required`, reported as a permissions problem. Each test starts its daemon on
127.0.0.1 on a free port with its own config file in a tmp dir; a test is skipped only when
the daemon's binary is not found. Every transfer is passive (ftplib's default, and the only
mode Carrier uses: it works through NAT and firewalls).
"""

from __future__ import annotations

import ftplib
import io
import os
import ssl
from pathlib import Path

import pytest

from carrier_cli.clients.instagram.ftp_upload import FtpConfig, FtpUploader, SessionReusingFTP_TLS
from carrier_cli.errors import RuntimeFailure
from tests.clients.instagram.helpers import ftp_config
from tests.support.instagram_servers import (
    FakeGraph,
    HttpServerHandle,
    RealFtpd,
    start_pureftpd,
    start_vsftpd,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]


def config(server: RealFtpd, **kw: object) -> FtpConfig:
    names = ("host", "port", "username", "password", "tls", "directory")
    return ftp_config({name: getattr(server, name) for name in names}, **kw)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(2 * 1024 * 1024 + 77))
    return path


def upload_and_check(server: RealFtpd, payload: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if server.ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    result = FtpUploader(config(server), retries=0).upload(payload, "photo.jpg")
    assert result.tls is server.tls
    assert result.size == payload.stat().st_size
    assert (server.root / "photo.jpg").read_bytes() == payload.read_bytes()
    assert not (server.root / ".photo.jpg.part").exists()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "ftps"])
def test_vsftpd_debian_defaults(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    for server in start_vsftpd(tmp_path, tls=tls):
        upload_and_check(server, payload, monkeypatch)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "ftps"])
def test_pureftpd_debian_defaults(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    for server in start_pureftpd(tmp_path, tls=tls):
        upload_and_check(server, payload, monkeypatch)


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
@pytest.mark.parametrize("daemon", ["vsftpd", "pure-ftpd"])
def test_session_reuse_with_tls_12_and_13(
    tmp_path: Path, daemon: str, version: ssl.TLSVersion
) -> None:
    """Two uploads on one control connection, each data connection resuming the session.

    With TLS 1.3 the session ticket arrives after the handshake; the session is read when
    each data connection opens, after replies have been read, so it is a resumable one.
    vsftpd needs `ssl_ciphers=HIGH` for TLS 1.2 (its built-in list has no usable suite).
    """
    servers = (
        start_vsftpd(tmp_path, tls=True, tls12_ciphers=True)
        if daemon == "vsftpd"
        else start_pureftpd(tmp_path, tls=True)
    )
    for server in servers:
        assert server.ca_file
        context = ssl.create_default_context(cafile=str(server.ca_file))
        context.minimum_version = context.maximum_version = version
        ftp = SessionReusingFTP_TLS(context=context, timeout=10)
        ftp.connect(server.host, server.port)
        ftp.auth()
        ftp.login(server.username, server.password)
        ftp.prot_p()
        ftp.cwd(server.directory)
        for name, size in (("a.bin", 300_000), ("b.bin", 10)):
            ftp.storbinary(f"STOR {name}", io.BytesIO(b"x" * size))
            assert ftp.size(name) == size
        assert (
            isinstance(ftp.sock, ssl.SSLSocket)
            and ftp.sock.version()
            == {
                ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                ssl.TLSVersion.TLSv1_3: "TLSv1.3",
            }[version]
        )
        ftp.quit()


def test_refused_session_reuse_names_tls_not_permissions(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that still refuses the data connection's TLS: the message says so.

    Simulated by a client that does not resume (plain ftplib.FTP_TLS, as Carrier was).
    """
    import carrier_cli.clients.instagram.ftp_upload as ftp_upload

    monkeypatch.setattr(ftp_upload, "SessionReusingFTP_TLS", ftplib.FTP_TLS)
    for server in start_vsftpd(tmp_path, tls=True):
        assert server.ca_file
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
        with pytest.raises(RuntimeFailure) as info:
            FtpUploader(config(server), retries=0).upload(payload, "photo.jpg")
        text = str(info.value)
        assert "TLS session reuse" in text and "522" in text
        assert "may write" not in text  # the old hint blamed permissions


def test_carrier_instagram_post_through_vsftpd_ftps(
    tmp_path: Path,
    ftp_root: Path,
    media_http_server: HttpServerHandle,
    fake_graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acceptance: `carrier instagram post` uploads over FTPS to vsftpd as Debian ships it."""
    from tests.clients.instagram.cli_helpers import carrier
    from tests.clients.instagram.helpers import make_image

    for server in start_vsftpd(tmp_path / "ftpd", tls=True, upload=ftp_root):
        assert server.ca_file
        env = {
            "INSTAGRAM_ACCOUNT_ID": fake_graph.account_id,
            "INSTAGRAM_ACCESS_TOKEN": fake_graph.token,
            "CARRIER_GRAPH_API_BASE": fake_graph.url,
            "FTP_SERVER": f"{server.host}:{server.port}",
            "FTP_USERNAME": server.username,
            "FTP_PASSWORD": server.password,
            "FTP_DIRECTORY": server.directory,
            "FTP_TLS": "true",
            "HTTP_SERVER": media_http_server.url,
            "SSL_CERT_FILE": str(server.ca_file),
            "CARRIER_INSTAGRAM_POLL_INTERVAL": "0.02",
            "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
            "CARRIER_INSTAGRAM_FTP_CLEANUP": "keep",  # the file is looked at below
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        work = tmp_path / "work"
        work.mkdir()
        make_image(work / "photo.png", (900, 700), fmt="PNG")
        result = carrier("instagram", "post", "photo.png", "--caption", "via vsftpd", cwd=work)
        assert result.returncode == 0, result.stderr
        [media] = fake_graph.published
        assert media["caption"] == "via vsftpd" and media["id"] in result.stdout
        files = [p for p in ftp_root.iterdir() if not p.name.startswith(".")]
        assert len(files) == 1 and files[0].read_bytes()[:2] == b"\xff\xd8"
        assert not [p for p in ftp_root.iterdir() if p.name.endswith(".part")]
        url, status, _ = fake_graph.downloads[0]
        assert status == 200 and url.endswith(files[0].name)
        # after_publish (the default) deletes it through vsftpd once Instagram published it
        again = carrier(
            "instagram",
            "post",
            "photo.png",
            "--caption",
            "via vsftpd",
            "--force",
            cwd=work,
            extra_env={"CARRIER_INSTAGRAM_FTP_CLEANUP": "after_publish"},
        )
        assert again.returncode == 0, again.stderr
        assert len(fake_graph.published) == 2
        assert [p for p in ftp_root.iterdir() if not p.name.startswith(".")] == []
