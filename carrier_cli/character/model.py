"""The Carrier character: who the agent is, how it talks, and which model and clients it uses.

The models are strict (`extra="forbid"`) so that code building a character by hand gets
the same guarantees as a file; files go through `carrier_cli.character.loader`, which
reports unknown keys itself (with positions and suggestions) before validation.

Every field has a size limit (the constants below, listed in README.md under "Character
limits"). A character ends up in every prompt: a 20 MB `name` used to validate, then cost
2 GB in `chat` and a 413 from the model server. The limits are far above what a
hand-written or imported ElizaOS character uses (the largest shipped one: 132 topics,
post examples under 1,000 characters), so they only stop files that would break a run.
The whole file is also capped (`marks.MAX_FILE_BYTES`, 2 MiB) before it is parsed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carrier_cli.usage.caps import Budget

# --- limits (keep README.md "Character limits" in sync) --------------------------------------
MAX_NAME = 100  # name, username, the speaker of an example message
MAX_SHORT = 200  # one adjective, topic, plugin, action, model or key name
MAX_LINE = 4_000  # one bio, lore or post-example line, one example message's text
MAX_STYLE_LINE = 2_000  # one style direction
MAX_LONG = 20_000  # the system prompt, one template, one inline knowledge entry
MAX_PATH = 4_096  # a folder path
MAX_LINES = 500  # bio, lore, adjectives, topics, post examples
MAX_STYLE_LINES = 200  # each of style.all / style.chat / style.post
MAX_KNOWLEDGE = 2_000  # knowledge entries (long documents belong in files it points to)
MAX_CONVERSATIONS = 200  # message examples (conversations)
MAX_TURNS = 50  # messages in one example conversation
MAX_ACTIONS = 20  # actions of one example message
MAX_TEMPLATES = 50
MAX_PLUGINS = 100
MAX_CHANNELS = 1_000  # discord.allowed_channel_ids (one id: up to 32 characters)
MAX_HASHTAGS = 100  # instagram.hashtags (one tag: up to 100 characters)


# Text of at most so many characters (list items and optional fields).
NameText = Annotated[str, Field(max_length=MAX_NAME)]
Short = Annotated[str, Field(max_length=MAX_SHORT)]
Line = Annotated[str, Field(max_length=MAX_LINE)]
StyleLine = Annotated[str, Field(max_length=MAX_STYLE_LINE)]
LongText = Annotated[str, Field(max_length=MAX_LONG)]
PathText = Annotated[str, Field(max_length=MAX_PATH)]
ChannelId = Annotated[str, Field(max_length=32)]
Hashtag = Annotated[str, Field(max_length=100)]


def _as_list(value: Any) -> Any:
    """A single string where a list is expected is the most common hand-written shortcut."""
    if isinstance(value, str):
        return [value]
    if value is None:
        return []
    return value


def _empty_mapping(value: Any) -> Any:
    """`model:` with every line below it commented out is YAML null; treat it as unset."""
    return {} if value is None else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Style(_Strict):
    """Style directions: `all` always applies, `chat` for replies, `post` for posts."""

    all: list[StyleLine] = Field(default_factory=list, max_length=MAX_STYLE_LINES)
    chat: list[StyleLine] = Field(default_factory=list, max_length=MAX_STYLE_LINES)
    post: list[StyleLine] = Field(default_factory=list, max_length=MAX_STYLE_LINES)

    @field_validator("all", "chat", "post", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)


class ExampleMessage(_Strict):
    """One turn of an example conversation. `{{user1}}`-style names are kept verbatim; the
    runtime replaces them with random names when it builds a prompt."""

    name: str = Field(max_length=MAX_NAME)
    text: str = Field("", max_length=MAX_LINE)
    actions: list[Short] = Field(default_factory=list, max_length=MAX_ACTIONS)

    @field_validator("actions", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)


class ModelSettings(_Strict):
    """Model choice. Unset provider/name: the runtime picks from the configured keys.
    Settings (`model_provider`, `model_name`, `small_model`) override these."""

    provider: Short | None = None
    name: Short | None = None
    small: Short | None = None
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, gt=0)
    embedding: Short | None = None
    # Does the chat model accept images? None: decided from the model's name
    # (llm capability table); true/false overrides it for models the table does not know.
    vision: bool | None = None

    @field_validator("provider", mode="after")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else None


class DiscordChannelSettings(_Strict):
    mode: Literal["always", "mentions", "listen", "off"] = "always"

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 (PyYAML) reads an unquoted `off` as false: `mode: off` means "off".
        return "off" if value is False else value


class DiscordClientSettings(_Strict):
    respond_only_to_mentions: bool = False
    ignore_bots: bool = True
    ignore_dms: bool = False
    allowed_channel_ids: list[ChannelId] = Field(default_factory=list, max_length=MAX_CHANNELS)
    # Name in `carrier keys` holding this character's bot token, e.g. "discord:eliza".
    token_key: Short | None = None
    # Per-channel modes, keyed by channel id or name (issue 17): always answers what the
    # should-respond step accepts, mentions answers only when addressed (and stores the
    # rest), listen stores every message and never answers, off ignores the channel.
    channels: dict[ChannelId, DiscordChannelSettings] = Field(
        default_factory=dict, max_length=MAX_CHANNELS
    )
    # Slash commands: "guild" syncs them to each guild on start (instant, for development),
    # "global" syncs them globally (up to an hour to appear), "off" leaves the registered set.
    sync_commands: Literal["off", "guild", "global"] = "off"
    # Roles (names or ids) allowed /memory besides members with Manage Server.
    memory_roles: list[Short] = Field(default_factory=list, max_length=MAX_LINES)
    # Open a thread for a conversation that starts with a mention in a channel.
    reply_in_thread: bool = False
    # Messages per channel read into memory on start or on joining a guild (at most 200).
    backfill: int = Field(default=0, ge=0, le=200)
    # A reaction put on a message while the agent thinks; None: none.
    ack_reaction: Short | None = None
    # Reactions on a bot reply stored as feedback on that reply.
    feedback_positive: list[Short] = Field(default_factory=lambda: ["\N{THUMBS UP SIGN}"])
    feedback_negative: list[Short] = Field(default_factory=lambda: ["\N{THUMBS DOWN SIGN}"])
    # The bot's presence (custom status line); None: none.
    status: Short | None = None
    # Text attachments (.txt .md .pdf .csv) read into the turn up to this size each, and
    # optionally ingested as knowledge of the room.
    max_text_attachment_bytes: int = Field(default=1_000_000, ge=0, le=25_000_000)
    ingest_attachments: bool = False
    # Images passed to the model per message, and the largest one fetched.
    max_images: int = Field(default=4, ge=0, le=10)
    max_image_bytes: int = Field(default=10_000_000, ge=0, le=25_000_000)

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_keys(cls, value: Any) -> Any:
        # Snowflake keys written unquoted in YAML arrive as integers.
        value = _empty_mapping(value)
        if isinstance(value, dict):
            return {
                str(k) if isinstance(k, int) and not isinstance(k, bool) else k: (
                    # The shortcut `general: listen` (or `off-topic: off`) for {mode: ...}.
                    {"mode": v} if isinstance(v, str | bool) else v
                )
                for k, v in value.items()
            }
        return value

    @field_validator("memory_roles", "feedback_positive", "feedback_negative", mode="before")
    @classmethod
    def _short_lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("allowed_channel_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # Snowflakes written unquoted in YAML arrive as integers; they are ids, not numbers.
        value = _as_list(value)
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("token_key", mode="after")
    @classmethod
    def _key_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value != "discord" and not value.startswith("discord:"):
            raise ValueError(
                "token_key must name a key stored with `carrier keys set`, "
                "like 'discord' or 'discord:<character>'"
            )
        return value


class InstagramClientSettings(_Strict):
    enabled: bool = True
    post_interval_minutes: int = Field(default=240, gt=0)
    interval_jitter_minutes: int = Field(default=30, ge=0)
    # Written without '#'; the client adds it. A leading '#' is accepted and removed.
    hashtags: list[Hashtag] = Field(default_factory=list, max_length=MAX_HASHTAGS)
    # Folder of images to post from; relative paths are relative to the character file.
    media_folder: PathText | None = None
    # Name in `carrier keys` holding this character's Graph API token, e.g.
    # "instagram:eliza" (one account per character); None: the global token.
    account_key: Short | None = None
    # The numeric Instagram user id of that account (needed with account_key).
    account_id: Annotated[str, Field(pattern=r"^[0-9]{1,30}$")] | None = None
    # Autoposts wait for `carrier instagram approve ID` instead of going out.
    require_approval: bool = False
    # Comment replies (issue 18): answer comments on the account's recent posts.
    reply_to_comments: bool = False
    # Answer only comments containing one of these words (case-insensitive); empty: any.
    comment_keywords: list[Short] = Field(default_factory=list, max_length=MAX_LINES)
    # Answer only comments that @mention the account.
    comment_mentions_only: bool = False
    max_replies_per_hour: int = Field(default=30, ge=0, le=10_000)

    @field_validator("comment_keywords", mode="before")
    @classmethod
    def _keywords(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("hashtags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        value = _as_list(value)
        if isinstance(value, list):
            return [v.strip().lstrip("#") if isinstance(v, str) else v for v in value]
        return value


class Clients(_Strict):
    discord: DiscordClientSettings = Field(default_factory=DiscordClientSettings)
    instagram: InstagramClientSettings = Field(default_factory=InstagramClientSettings)

    @field_validator("discord", "instagram", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return _empty_mapping(value)


class Character(_Strict):
    """A validated character. Build one from a file with `load_character`.

    Sizes are capped per field (`MAX_*` above; README.md "Character limits"): e.g. `name`
    100 characters, each bio/lore/post line 4,000, at most 500 lines per list, 200 example
    conversations of 50 messages, `system`, templates and inline knowledge 20,000 each.
    """

    name: str = Field(min_length=1, max_length=MAX_NAME)
    username: NameText | None = None
    system: LongText | None = None
    bio: list[Line] = Field(default_factory=list, max_length=MAX_LINES)
    lore: list[Line] = Field(default_factory=list, max_length=MAX_LINES)
    adjectives: list[Short] = Field(default_factory=list, max_length=MAX_LINES)
    topics: list[Short] = Field(default_factory=list, max_length=MAX_LINES)
    style: Style = Field(default_factory=Style)
    message_examples: list[Annotated[list[ExampleMessage], Field(max_length=MAX_TURNS)]] = Field(
        default_factory=list, max_length=MAX_CONVERSATIONS
    )
    post_examples: list[Line] = Field(default_factory=list, max_length=MAX_LINES)
    knowledge: list[LongText] = Field(default_factory=list, max_length=MAX_KNOWLEDGE)
    templates: dict[Short, LongText] = Field(default_factory=dict, max_length=MAX_TEMPLATES)
    model: ModelSettings = Field(default_factory=ModelSettings)
    clients: Clients = Field(default_factory=Clients)
    plugins: list[Short] = Field(default_factory=list, max_length=MAX_PLUGINS)
    # Spending caps for this character (usage.caps.Budget); None: none but the global one.
    budget: Budget | None = None
    # Free-form; bounded by the file's size and the YAML limits (carrier_cli.safe_yaml).
    settings: dict[str, Any] = Field(default_factory=dict)
    source_path: Path | None = Field(None, exclude=True)

    @field_validator(
        "bio",
        "lore",
        "adjectives",
        "topics",
        "message_examples",
        "post_examples",
        "knowledge",
        "plugins",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("style", "templates", "model", "clients", "settings", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return _empty_mapping(value)

    @field_validator("name", mode="after")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name must not be empty")
        return value

    @property
    def id(self) -> uuid.UUID:
        """Stable agent id: the same name maps to the same memories across runs."""
        from carrier_cli.memory.types import stable_id

        return stable_id("character", self.name)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the character are resolved against."""
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def existing_path(self, entry: str) -> Path | None:
        """The file or directory a knowledge entry names, or None for inline text."""
        if not entry or "\n" in entry or len(entry) > 1024:
            return None
        try:
            path = self.resolve_path(entry)
            return path if path.exists() else None
        except (OSError, ValueError):
            return None

    def knowledge_paths(self) -> list[Path]:
        """Knowledge entries that name an existing file or directory (documents to ingest)."""
        return [p for p in (self.existing_path(k) for k in self.knowledge) if p is not None]

    def knowledge_texts(self) -> list[str]:
        """Knowledge entries that are inline facts rather than paths."""
        return [k for k in self.knowledge if k.strip() and self.existing_path(k) is None]

    def media_folder_path(self) -> Path | None:
        folder = self.clients.instagram.media_folder
        return self.resolve_path(folder) if folder else None
