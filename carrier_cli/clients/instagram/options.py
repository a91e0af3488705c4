"""What the Instagram code reads of the settings, as small frozen objects.

`Settings` holds every component's fields. The edges (`run_instagram_client`, the
`service` functions behind `carrier instagram ...`) take the settings and build an
`InstagramOptions` once; the Graph client, the FTP upload, the pipeline, the journal and
the autopost loop take these objects instead. This module is the only place the Instagram
code reads `Settings` fields by name.

Building options checks nothing: a missing token, account id or FTP server is refused
where it is used (`GraphClient`, `FtpConfig.from_options`, `check_publish_settings`), so
`carrier instagram whoami` still works without FTP settings and every message stays the
one the operator knew. Secrets are plain strings kept out of `repr`, so no log line or
`--debug` traceback that shows an options object shows a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from carrier_cli.config import Settings


@dataclass(frozen=True, kw_only=True)
class GraphOptions:
    """The Graph API account, where to reach it, and how patiently."""

    account_id: str | None
    access_token: str | None = field(repr=False)
    api_host: str  # graph.facebook.com or graph.instagram.com
    api_version: str
    api_base: str | None  # full base URL override (proxies, tests)
    max_retries: int
    retry_delay: float  # first back-off delay (doubles)
    poll_interval: float  # between container status checks (grows to 60)
    poll_timeout: float  # for a container to finish processing
    # The `carrier keys` name of a character's own account (accounts.py); None: the global
    # INSTAGRAM_ACCOUNT_ID / INSTAGRAM_ACCESS_TOKEN.
    account_key: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphOptions:
        return cls(
            account_id=settings.instagram_account_id,
            access_token=settings.secret("instagram_access_token"),
            api_host=settings.graph_api_host,
            api_version=settings.graph_api_version,
            api_base=settings.graph_api_base,
            max_retries=settings.max_retries,
            retry_delay=settings.instagram_retry_delay,
            poll_interval=settings.instagram_poll_interval,
            poll_timeout=settings.instagram_poll_timeout,
        )


@dataclass(frozen=True, kw_only=True)
class FtpOptions:
    """The FTP settings as given; `FtpConfig.from_options` checks and parses them."""

    server: str | None  # host or host:port
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: bool | None  # None: explicit FTPS when the server offers it
    directory: str

    @classmethod
    def from_settings(cls, settings: Settings) -> FtpOptions:
        return cls(
            server=settings.ftp_server,
            port=settings.ftp_port,
            username=settings.ftp_username,
            password=settings.secret("ftp_password"),
            tls=settings.ftp_tls,
            directory=settings.ftp_directory,
        )


@dataclass(frozen=True, kw_only=True)
class InstagramOptions:
    """Everything publishing reads: Graph, FTP, the public URL, the journal's database."""

    graph: GraphOptions
    ftp: FtpOptions
    http_server: str | None  # public base URL serving the FTP directory
    retry_delay: float  # first back-off delay for FTP and HTTP retries (doubles)
    database_url: str | None  # the memory database, where the journal lives
    # after_publish | keep: the uploaded files once the post is out (instagram_ftp_cleanup)
    ftp_cleanup: str = "after_publish"
    queue_poll_interval: float = 15.0  # seconds between checks for due scheduled posts
    # "resumable": Reels go to Meta's rupload host instead of FTP (rupload.py).
    reel_upload: str = "ftp"

    @classmethod
    def from_settings(cls, settings: Settings) -> InstagramOptions:
        return cls(
            graph=GraphOptions.from_settings(settings),
            ftp=FtpOptions.from_settings(settings),
            http_server=settings.http_server,
            retry_delay=settings.instagram_retry_delay,
            database_url=settings.database_url,
            ftp_cleanup=settings.instagram_ftp_cleanup,
            queue_poll_interval=settings.instagram_queue_poll_interval,
            reel_upload=settings.instagram_reel_upload,
        )


@dataclass(frozen=True, kw_only=True)
class CommentOptions:
    """What the comment replier reads (clients/instagram/comment_replies.py)."""

    graph: GraphOptions
    poll_interval: float  # seconds between polls of the recent posts' comments
    media_count: int  # how many of the newest posts are polled

    @classmethod
    def from_settings(cls, settings: Settings) -> CommentOptions:
        return cls(
            graph=GraphOptions.from_settings(settings),
            poll_interval=settings.instagram_comment_poll_interval,
            media_count=settings.instagram_comment_media,
        )
