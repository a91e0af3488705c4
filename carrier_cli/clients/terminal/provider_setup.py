"""What `carrier chat` does when no model provider is configured: explain, and offer a fix.

A first run should end with a working chat, not a stack trace. Piped, the model layer's
NoProviderConfigured (exit 2, naming the three ways) is all there is; on a terminal the
three ways are listed and a key can be stored right there, in the same secret store
`carrier keys set` uses.
"""

from __future__ import annotations

import getpass
import textwrap
from collections.abc import Callable

_CHOICES = {"o": "openai", "openai": "openai", "a": "anthropic", "anthropic": "anthropic"}


def is_no_provider(exc: BaseException) -> bool:
    from carrier_cli.llm.errors import NoProviderConfigured

    return isinstance(exc, NoProviderConfigured)


def explain_providers() -> str:
    from carrier_cli.llm.errors import provider_options

    lines = [
        "No model provider is configured, so the agent cannot answer yet.",
        "There are three ways to get one:",
    ]
    for number, option in enumerate(provider_options(), 1):
        lines.append(
            textwrap.fill(
                f"{number}. {option.title}: {option.how}.",
                width=92,
                initial_indent="  ",
                subsequent_indent="     ",
            )
        )
    return "\n".join(lines)


def offer_to_store_key(
    write: Callable[[str], None],
    ask: Callable[[str], str] = input,
    ask_secret: Callable[[str], str] = getpass.getpass,
) -> str | None:
    """Explain, ask which key to store and store it: the provider to use, or None."""
    write(explain_providers() + "\n\n")
    try:
        choice = ask("Store a key now? [o]penai / [a]nthropic / [n]o: ").strip().lower()
        provider = _CHOICES.get(choice)
        if provider is None:
            return None
        value = ask_secret(f"{provider} API key (input hidden): ").strip()
    except (EOFError, KeyboardInterrupt):
        write("\n")
        return None
    if not value:
        write("No key entered.\n")
        return None
    from carrier_cli.secrets import SecretStore
    from carrier_cli.state import register_secret

    register_secret(value)
    store = SecretStore()
    store.set(provider, value)
    write(f"Stored the {provider} key in {store.backend_name}.\n\n")
    return provider
