"""The Discord client: one discord.py bot per character, driven by the agent runtime.

`run_discord_client(runtime, settings, stop_event)` is what `carrier run --client discord`
starts; importing this package does not import discord.py (that happens when it runs).
"""

from carrier_cli.clients.discord.runner import preflight, resolve_token, run_discord_client
from carrier_cli.clients.discord.split import DISCORD_LIMIT, split_message

__all__ = ["DISCORD_LIMIT", "preflight", "resolve_token", "run_discord_client", "split_message"]
