"""The terminal client behind `carrier chat`: a Rich interface on a terminal, plain lines
when piped. `run_chat(ChatOptions(...))` runs a whole session."""

from carrier_cli.clients.terminal.runner import run_chat
from carrier_cli.clients.terminal.session import ChatOptions, ChatSession

__all__ = ["ChatOptions", "ChatSession", "run_chat"]
