"""Write characters as YAML people want to edit: block style, unicode kept, multi-line
text as `|` blocks, defaults left out, and fields in the documented order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from carrier_cli.character.model import Character


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key; PyYAML's default puts them flush left.
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    # Short word lists (adjectives, topics, hashtags) read better on one line.
    short = all(isinstance(v, str) and "\n" not in v and len(v) <= 30 for v in value)
    flow = bool(value) and short and len(", ".join(value)) <= 72
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def character_data(character: Character) -> dict[str, Any]:
    """Plain data for a dump: only what differs from the defaults (name always)."""
    data = character.model_dump(mode="json", exclude_defaults=True)
    data["name"] = character.name
    return {key: data[key] for key in Character.model_fields if key in data}


def dump_character_yaml(character: Character, header: list[str] | None = None) -> str:
    """YAML text of the character; `header` lines become leading comments."""
    body = yaml.dump(
        character_data(character),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=10_000,
        indent=2,
    )
    # Blank line between top-level fields keeps long files scannable.
    lines = body.splitlines()
    spaced: list[str] = []
    for line in lines:
        if spaced and line and not line.startswith((" ", "-")):
            spaced.append("")
        spaced.append(line)
    prefix = "".join(f"# {h.replace(chr(10), ' ')}\n" if h.strip() else "#\n" for h in header or [])
    return prefix + "\n".join(spaced) + "\n"


_SCAFFOLD = """\
# Carrier character file. Reference: characters/README.md in the Carrier repository.
# Check it with: carrier character validate {path}

# The agent's name: how it refers to itself and how others address it.
name: {name_json}
# username: {slug}                # optional handle on platforms that have one

# Optional: replaces the opening of the system prompt (who the agent is, in one paragraph).
system: >-
  You are {name_text}, a friendly and capable assistant. You answer clearly and
  briefly, ask when something is ambiguous, and admit when you do not know.

# Who the agent is. A few items are picked at random for every prompt, so write several
# short, self-contained sentences rather than one long one.
bio:
  - {name_text} is a helpful assistant who enjoys explaining things simply.
  - {name_text} prefers a short, correct answer to a long, vague one.
  - {name_text} is curious about the people it talks with.

# Backstory and anecdotes (optional); also sampled at random.
lore:
  - {name_text} was set up to keep a small team's questions answered at any hour.

adjectives: [helpful, curious, concise, warm]
topics: [everyday questions, learning new things, getting things done]

# How the agent writes. `all` always applies; `chat` for replies, `post` for posts.
style:
  all:
    - plain language, no jargon unless the other person uses it
    - short paragraphs
  chat:
    - answer the question first, then add detail only if it helps
  post:
    - one idea per post, under 280 characters

# Example conversations. {{{{user1}}}} is replaced by a random name at run time.
message_examples:
  - - name: "{{{{user1}}}}"
      text: Can you help me plan my week?
    - name: {name_json}
      text: Happily. What are the three things that must get done, and what is fixed in time?

# Example posts, used when writing posts (Instagram captions).
post_examples:
  - Small steps, done daily, beat big plans done never.

# Facts the agent knows, and/or paths to files or folders to ingest (relative to this file).
knowledge: []
#  - docs/faq.md

# Model choice. Leave provider unset to use whichever provider has a key configured
# (`carrier keys set openai` or `carrier keys set anthropic`).
model:
  temperature: 0.7
  max_tokens: 1024
  # provider: openai              # openai, anthropic or ollama
  # name: gpt-4o                  # large model
  # small: gpt-4o-mini            # small model (should-respond decisions)

clients:
  discord:
    respond_only_to_mentions: false
    ignore_bots: true
    ignore_dms: false
    allowed_channel_ids: []       # empty: every channel the bot can read
    # token_key: discord:{slug}     # stored with `carrier keys set discord:{slug}`
  instagram:
    post_interval_minutes: 240
    interval_jitter_minutes: 30
    hashtags: []
    # media_folder: media/{slug}

# Prompt template overrides, with {{{{placeholders}}}} such as {{{{agentName}}}} (optional).
templates: {{}}

plugins: []

# Free-form settings for plugins. Never put API keys or tokens here: use `carrier keys set`.
settings: {{}}

# Inherit from another character file (path relative to this file, or a character name);
# fields set here override it.
# extends: carrier
"""


def default_character_path(name: str) -> Path:
    """Where `carrier character new NAME` writes by default: ./characters/<slug>.yaml, the
    slug being the name in lower case with every other run of characters made one '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "character"
    return Path("characters") / f"{slug}.yaml"


def scaffold_character_yaml(name: str, path_hint: str = "FILE") -> str:
    """A commented, valid starting point for `carrier character new`."""
    import json
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "character"
    return _SCAFFOLD.format(
        name_json=json.dumps(name, ensure_ascii=False),
        name_text=name,
        slug=slug,
        path=path_hint,
    )
