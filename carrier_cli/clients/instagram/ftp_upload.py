"""Upload media to the FTP server whose directory a public HTTP server serves.

Instagram does not take uploads: it downloads the file from a public URL. So the URL must
never serve half a file: the upload goes to a hidden temporary name and is renamed once
its size is verified. An interrupted upload resumes with REST from what the server
already has. ftplib (blocking) runs in a worker thread; progress is reported through a
callback so the command line can draw a bar.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from carrier_cli.errors import ConfigError, RuntimeFailure

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.options import FtpOptions

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes on the server so far, total bytes)
BLOCK_SIZE = 256 * 1024
_TRANSIENT = (OSError, EOFError, ftplib.error_temp, ftplib.error_reply, ftplib.error_proto)


class SessionReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session.

    Servers check that the data connection comes from the client that logged in by
    requiring it to resume the control connection's TLS session: vsftpd does so by default
    (`require_ssl_reuse=YES`, as Debian ships it) and answers `522 SSL connection failed:
    session reuse required` otherwise; proftpd's `TLSOptions` without `NoSessionReuseRequired`
    does the same. ftplib starts a new session on every data connection (CPython issue
    63699), so every upload failed. The session is read when each data connection opens,
    not at login: with TLS 1.3 the server sends its session ticket after the handshake, and
    it reaches `self.sock.session` only once a later reply has been read on the control
    connection (which login and every command since have done).
    """

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def _tls_reuse_refused(exc: BaseException | str) -> bool:
    """A 522/425 reply about the data connection's TLS, i.e. session reuse was refused."""
    text = str(exc).lower()
    return (text[:3] in ("522", "425", "450") and ("ssl" in text or "tls" in text)) or (
        "session reuse" in text
    )


@dataclass(frozen=True)
class FtpConfig:
    host: str
    port: int
    username: str
    password: str = field(repr=False)  # never in a log line or a --debug traceback
    tls: bool | None  # None: explicit FTPS when the server offers it
    directory: str = "/"
    timeout: float = 30.0

    @classmethod
    def from_options(cls, options: FtpOptions) -> FtpConfig:
        """Check and parse the FTP settings (`InstagramOptions.ftp`); refused with the
        setting's name when the server is missing or its port is not a number."""
        if not options.server:
            raise ConfigError(
                "FTP_SERVER is not set: Carrier uploads media to an FTP server that a public "
                "HTTP server serves, because Instagram fetches media from a URL.",
                hint="Set FTP_SERVER, FTP_USERNAME, FTP_PASSWORD and HTTP_SERVER "
                "(see `carrier config show` and the README section 'Post to Instagram').",
            )
        host, port = options.server, options.port
        if host.count(":") == 1:
            name, _, raw_port = host.partition(":")
            if not raw_port.isdigit():
                raise ConfigError(f"FTP_SERVER `{host}`: the port after ':' must be a number.")
            host, port = name, int(raw_port)
        return cls(
            host=host,
            port=port,
            username=options.username or "anonymous",
            password=options.password or "",
            tls=options.tls,
            directory=options.directory or "/",
        )


@dataclass
class UploadResult:
    remote_path: str
    size: int
    resumed_from: int = 0
    attempts: int = 1
    skipped: bool = False  # the final file was already there with the right size
    tls: bool = False


class FtpUploader:
    """One FTP session per attempt; every attempt starts by asking what the server has."""

    def __init__(self, config: FtpConfig, *, retries: int = 5, backoff: float = 1.0) -> None:
        self.config = config
        self.retries = retries
        self.backoff = backoff

    # -- connection --------------------------------------------------------------------
    def connect(self) -> tuple[ftplib.FTP, bool]:
        cfg = self.config
        ftp: ftplib.FTP
        secured = False
        try:
            if cfg.tls is False:
                ftp = ftplib.FTP(timeout=cfg.timeout)
                ftp.connect(cfg.host, cfg.port)
                ftp.login(cfg.username, cfg.password)
            else:
                tls_ftp = SessionReusingFTP_TLS(
                    context=ssl.create_default_context(), timeout=cfg.timeout
                )
                tls_ftp.connect(cfg.host, cfg.port)
                try:
                    tls_ftp.auth()
                    secured = True
                except ftplib.error_perm as exc:
                    if cfg.tls:
                        tls_ftp.close()
                        raise ConfigError(
                            f"FTP_TLS is on but the FTP server {cfg.host}:{cfg.port} refused "
                            f"AUTH TLS ({exc}).",
                            hint="Enable explicit FTPS on the server, or set FTP_TLS=false to "
                            "send the password unencrypted.",
                        ) from None
                tls_ftp.login(cfg.username, cfg.password, secure=False)
                if secured:
                    tls_ftp.prot_p()
                ftp = tls_ftp
        except ftplib.error_perm as exc:
            code = str(exc)[:3]
            if code in ("530", "331", "332"):
                raise ConfigError(
                    f"The FTP server {cfg.host}:{cfg.port} refused the login for user "
                    f"`{cfg.username}` ({exc}).",
                    hint="Check FTP_USERNAME and FTP_PASSWORD (`carrier keys set ftp`).",
                ) from None
            raise RuntimeFailure(f"The FTP server {cfg.host}:{cfg.port} said: {exc}.") from None
        except ssl.SSLCertVerificationError as exc:
            raise RuntimeFailure(
                f"The FTP server {cfg.host}:{cfg.port} offered TLS with a certificate that "
                f"does not verify ({exc.verify_message}).",
                hint="Install a valid certificate on the server, point SSL_CERT_FILE at the CA "
                "that signed it, or set FTP_TLS=false.",
            ) from None
        try:
            ftp.voidcmd("TYPE I")
            ftp.cwd(cfg.directory or "/")
        except ftplib.error_perm as exc:
            ftp.close()
            raise ConfigError(
                f"FTP_DIRECTORY `{cfg.directory}` is not usable on {cfg.host} ({exc}).",
                hint="Create it, or set FTP_DIRECTORY to the directory HTTP_SERVER serves.",
            ) from None
        return ftp, secured

    @staticmethod
    def _size(ftp: ftplib.FTP, name: str) -> int | None:
        try:
            size = ftp.size(name)
        except ftplib.error_perm:
            return None
        return int(size) if size is not None else None

    # -- upload ------------------------------------------------------------------------
    def upload(
        self, local: Path, remote_name: str, progress: Progress | None = None
    ) -> UploadResult:
        total = local.stat().st_size
        temp_name = f".{remote_name}.part"
        last_error: BaseException | None = None
        for attempt in range(1, self.retries + 2):
            try:
                ftp, secured = self.connect()
            except (ConfigError, RuntimeFailure):
                raise
            except _TRANSIENT as exc:
                last_error = exc
                self._pause(attempt, exc)
                continue
            try:
                existing = self._size(ftp, remote_name)
                if existing == total:
                    if progress:
                        progress(total, total)
                    return UploadResult(
                        self._remote_path(remote_name),
                        total,
                        total,
                        attempt,
                        skipped=True,
                        tls=secured,
                    )
                offset = self._size(ftp, temp_name) or 0
                if offset > total:
                    ftp.delete(temp_name)
                    offset = 0
                if offset < total:
                    self._send(ftp, local, temp_name, offset, total, progress)
                uploaded = self._size(ftp, temp_name)
                if uploaded != total:
                    raise ftplib.error_temp(
                        f"451 size check failed: server has {uploaded} bytes, expected {total}"
                    )
                ftp.rename(temp_name, remote_name)
                final = self._size(ftp, remote_name)
                if final != total:
                    raise ftplib.error_temp(f"451 renamed file has {final} bytes, not {total}")
                self._quit(ftp)
                return UploadResult(
                    self._remote_path(remote_name), total, offset, attempt, tls=secured
                )
            except ftplib.error_perm as exc:
                self._quit(ftp)
                if secured and _tls_reuse_refused(exc):
                    raise RuntimeFailure(
                        f"The FTP server {self.config.host}:{self.config.port} refused the TLS "
                        f"data connection for {remote_name} ({exc}): it requires TLS session "
                        "reuse, and the data connection did not resume the control "
                        "connection's session.",
                        hint="Carrier resumes the session on every data connection; when the "
                        "server still refuses, its TLS session cache or tickets are off "
                        "(vsftpd: keep `require_ssl_reuse=YES` and check `ssl_ciphers`, or set "
                        "`require_ssl_reuse=NO`), or set FTP_TLS=false to use plain FTP.",
                    ) from None
                raise RuntimeFailure(
                    f"The FTP server refused to store {remote_name} in "
                    f"{self.config.directory} ({exc}).",
                    hint="Check that FTP_USERNAME may write, rename and read sizes in "
                    "FTP_DIRECTORY.",
                ) from None
            except _TRANSIENT as exc:
                last_error = exc
                self._quit(ftp)
                self._pause(attempt, exc)
        raise RuntimeFailure(
            f"Uploading {local.name} to {self.config.host}:{self.config.port} failed after "
            f"{self.retries + 1} attempts: {type(last_error).__name__}: {last_error}.",
            hint="Check the FTP server and run the same command again: the upload resumes "
            "where it stopped.",
        )

    def _send(
        self,
        ftp: ftplib.FTP,
        local: Path,
        temp_name: str,
        offset: int,
        total: int,
        progress: Progress | None,
    ) -> None:
        sent = offset
        if progress:
            progress(sent, total)

        def advance(block: bytes) -> None:
            nonlocal sent
            sent += len(block)
            if progress:
                progress(sent, total)

        with local.open("rb") as f:
            f.seek(offset)
            try:
                ftp.storbinary(f"STOR {temp_name}", f, BLOCK_SIZE, advance, rest=offset or None)
            except (ssl.SSLError, ConnectionError) as exc:
                # A server that refuses the data connection's TLS (vsftpd: 522 session reuse
                # required) closes it, often while the file is being sent, so the socket
                # error comes first and the reason waits on the control connection: read it,
                # so that a refusal is reported as one and not retried as a network hiccup.
                reply = self._pending_reply(ftp)
                if reply and _tls_reuse_refused(reply):
                    raise ftplib.error_perm(reply) from exc
                raise

    @staticmethod
    def _pending_reply(ftp: ftplib.FTP) -> str | None:
        """The server's reply to a transfer that broke off, if one arrives within 5 s."""
        try:
            if ftp.sock is not None:
                ftp.sock.settimeout(5)
            return ftp.getresp()
        except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as exc:
            return str(exc)
        except (OSError, EOFError, ftplib.Error):
            return None

    def _pause(self, attempt: int, exc: BaseException) -> None:
        if attempt > self.retries:
            return
        delay = min(self.backoff * (2 ** (attempt - 1)), 30.0)
        log.warning(
            "FTP attempt %d failed (%s: %s); retrying in %.1fs",
            attempt,
            type(exc).__name__,
            exc,
            delay,
        )
        time.sleep(delay)

    @staticmethod
    def _quit(ftp: ftplib.FTP) -> None:
        try:
            ftp.quit()
        except (*_TRANSIENT, ftplib.error_perm):
            ftp.close()

    def _remote_path(self, name: str) -> str:
        directory = self.config.directory.rstrip("/")
        return f"{directory}/{name}" if directory else f"/{name}"

    def delete(self, remote_name: str) -> bool:
        """Remove a published file; False (not an error) when it is already gone."""
        ftp, _ = self.connect()
        try:
            ftp.delete(remote_name)
            return True
        except ftplib.error_perm:
            return False
        finally:
            self._quit(ftp)

    def probe(self) -> dict[str, object]:
        """Log in and report what the server offers (for `carrier instagram whoami`)."""
        ftp, secured = self.connect()
        try:
            return {"welcome": ftp.getwelcome(), "tls": secured, "directory": ftp.pwd()}
        finally:
            self._quit(ftp)


async def upload_file(
    config: FtpConfig,
    local: Path,
    remote_name: str,
    *,
    progress: Progress | None = None,
    retries: int = 5,
    backoff: float = 1.0,
) -> UploadResult:
    uploader = FtpUploader(config, retries=retries, backoff=backoff)
    return await asyncio.to_thread(uploader.upload, local, remote_name, progress)


async def delete_file(config: FtpConfig, remote_name: str) -> bool:
    return await asyncio.to_thread(FtpUploader(config).delete, remote_name)
