"""The per-component options built from Settings at the edge: every field carried over,
frozen, and no secret in any repr (options end up in log lines and --debug tracebacks)."""

from __future__ import annotations

import dataclasses

import pytest

from carrier_cli.clients.discord.options import DiscordOptions
from carrier_cli.clients.instagram.ftp_upload import FtpConfig
from carrier_cli.clients.instagram.options import FtpOptions, GraphOptions, InstagramOptions
from carrier_cli.config import Settings

TOKEN = "EAAG-graph-access-token-0123456789"
PASSWORD = "ftp-pa55word-never-shown"
DISCORD_TOKEN = "MTIz.discord-bot-token.abcdefghijklmnop"


def _settings() -> Settings:
    return Settings(
        discord_api_token=DISCORD_TOKEN,
        discord_api_base="http://127.0.0.1:9/api",
        discord_gateway_url="ws://127.0.0.1:9/gateway",
        discord_max_concurrent_turns=7,
        discord_turn_timeout=33.0,
        discord_apology="oops",
        discord_typing_interval=2.5,
        discord_catch_up_minutes=4.0,
        shutdown_grace=3.0,
        instagram_account_id="17841400000000000",
        instagram_access_token=TOKEN,
        graph_api_host="graph.instagram.com",
        graph_api_version="v23.0",
        graph_api_base="http://127.0.0.1:9",
        max_retries=5,
        instagram_retry_delay=0.5,
        instagram_poll_interval=1.5,
        instagram_poll_timeout=90.0,
        ftp_server="files.example.com:2121",
        ftp_port=21,
        ftp_username="uploader",
        ftp_password=PASSWORD,
        ftp_tls=True,
        ftp_directory="/media",
        http_server="https://media.example.com/",
        database_url="sqlite:///journal.db",
    )


def test_no_secret_in_any_repr() -> None:
    settings = _settings()
    instagram = InstagramOptions.from_settings(settings)
    shown = [
        repr(instagram),
        str(instagram),
        repr(instagram.graph),
        repr(instagram.ftp),
        repr(GraphOptions.from_settings(settings)),
        repr(FtpOptions.from_settings(settings)),
        repr(FtpConfig.from_options(instagram.ftp)),
        repr(DiscordOptions.from_settings(settings)),
    ]
    for text in shown:
        for secret in (TOKEN, PASSWORD, DISCORD_TOKEN):
            assert secret not in text
    # The secrets are there for the code that uses them, just not shown.
    assert instagram.graph.access_token == TOKEN
    assert instagram.ftp.password == PASSWORD
    assert "uploader" in repr(instagram.ftp) and "17841400000000000" in repr(instagram)


def test_discord_options_carry_every_setting_the_bot_reads() -> None:
    options = DiscordOptions.from_settings(_settings())
    assert options == DiscordOptions(
        api_base="http://127.0.0.1:9/api",
        gateway_url="ws://127.0.0.1:9/gateway",
        max_concurrent_turns=7,
        turn_timeout=33.0,
        apology="oops",
        typing_interval=2.5,
        catch_up_minutes=4.0,
        shutdown_grace=3.0,
    )
    # Every discord_* setting is in the options, except the token (resolved per character
    # in runner.py) and the shard ids (in `shards`, one plan with discord_shards): a new one
    # added to Settings but not here fails.
    carried = {f"discord_{f.name}" for f in dataclasses.fields(DiscordOptions)}
    discord_settings = {n for n in Settings.model_fields if n.startswith("discord_")}
    assert discord_settings - carried == {"discord_api_token", "discord_shard_ids"}


def test_instagram_options_carry_every_setting_publishing_reads() -> None:
    options = InstagramOptions.from_settings(_settings())
    assert options.graph == GraphOptions(
        account_id="17841400000000000",
        access_token=TOKEN,
        api_host="graph.instagram.com",
        api_version="v23.0",
        api_base="http://127.0.0.1:9",
        max_retries=5,
        retry_delay=0.5,
        poll_interval=1.5,
        poll_timeout=90.0,
    )
    assert options.ftp == FtpOptions(
        server="files.example.com:2121",
        port=21,
        username="uploader",
        password=PASSWORD,
        tls=True,
        directory="/media",
    )
    assert (options.http_server, options.retry_delay, options.database_url) == (
        "https://media.example.com/",
        0.5,
        "sqlite:///journal.db",
    )
    config = FtpConfig.from_options(options.ftp)
    assert (config.host, config.port, config.username, config.directory) == (
        "files.example.com",
        2121,
        "uploader",
        "/media",
    )


def test_options_are_frozen() -> None:
    options = InstagramOptions.from_settings(_settings())
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.graph.access_token = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DiscordOptions.from_settings(_settings()).apology = "changed"  # type: ignore[misc]


def test_building_options_checks_nothing() -> None:
    """Missing settings are refused where they are used (with the messages operators
    know), not when the options are built: `whoami` needs no FTP server."""
    options = InstagramOptions.from_settings(Settings())
    assert options.graph.access_token is None and options.ftp.server is None
    assert options.ftp.directory == "/" and options.http_server is None
