"""Translate ElizaOS character files (0.x and v1) into Carrier's field layout.

ElizaOS users bring existing files; the two common failures there were fields silently
ignored and the 0.x `user` -> v1 `name` rename breaking examples. So everything with a
meaning in Carrier is carried over, everything else is listed as dropped with the reason
and its position, and secrets are never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carrier_cli.character.marks import KeyPath

# Keys that only an ElizaOS file has (Carrier uses snake_case or has no such field).
_ELIZA_MARKERS = {
    "messageExamples",
    "postExamples",
    "modelProvider",
    "clientConfig",
    "imageModelProvider",
    "imageVisionModelProvider",
    "twitterProfile",
    "twitterSpaces",
    "nicknames",
    "secrets",
}
_CARRIER_TOP = {
    "name",
    "username",
    "system",
    "bio",
    "lore",
    "adjectives",
    "topics",
    "style",
    "message_examples",
    "post_examples",
    "knowledge",
    "templates",
    "model",
    "clients",
    "plugins",
    "settings",
    "extends",
}
_PASS_THROUGH = {
    "name",
    "username",
    "system",
    "bio",
    "lore",
    "adjectives",
    "topics",
    "style",
    "templates",
    "extends",
}
_DISCORD_FLAGS = {
    "shouldRespondOnlyToMentions": "respond_only_to_mentions",
    "shouldIgnoreBotMessages": "ignore_bots",
    "shouldIgnoreDirectMessages": "ignore_dms",
    "allowedChannelIds": "allowed_channel_ids",
}
_WHY = {
    "id": "Carrier derives the agent id from the name",
    "twitterProfile": "Carrier has no Twitter client",
    "twitterSpaces": "Carrier has no Twitter client",
    "nicknames": "not used by Carrier",
    "imageModelProvider": "Carrier does not generate images",
    "imageVisionModelProvider": "Carrier does not describe images with a separate provider",
}


@dataclass
class Conversion:
    data: dict[str, Any]
    # Carrier path -> path in the original file, for positions and messages.
    origin: dict[KeyPath, KeyPath] = field(default_factory=dict)
    # (original path, why it was not carried over); `secret` ones are reported more loudly.
    dropped: list[tuple[KeyPath, str]] = field(default_factory=list)
    secrets: list[tuple[KeyPath, str]] = field(default_factory=list)

    def original(self, path: KeyPath) -> KeyPath:
        for end in range(len(path), 0, -1):
            found = self.origin.get(path[:end])
            if found is not None:
                return (*found, *path[end:])
        return path


def is_eliza(data: dict[str, Any]) -> bool:
    if any(key in _ELIZA_MARKERS for key in data):
        return True
    return isinstance(data.get("clients"), list)


def convert(data: dict[str, Any]) -> Conversion:
    """Carrier-shaped data from an ElizaOS character mapping (unvalidated: the Carrier
    validation that follows reports wrong types at their original positions)."""
    conv = Conversion({})
    out = conv.data
    for key, value in data.items():
        here: KeyPath = (key,)
        if key in _PASS_THROUGH:
            out[key] = _drop_empty(value)
            conv.origin[here] = here
        elif key in ("postExamples", "post_examples"):
            out["post_examples"] = _drop_empty(value)
            conv.origin[("post_examples",)] = here
        elif key in ("messageExamples", "message_examples"):
            out["message_examples"] = _examples(value, here, conv)
        elif key == "knowledge":
            out["knowledge"] = _knowledge(value, here, conv)
        elif key == "plugins":
            out["plugins"] = _plugins(value, here, conv)
        elif key == "modelProvider":
            _provider(value, here, conv)
        elif key == "settings":
            _settings(value, here, conv)
        elif key == "secrets":
            _secrets(value, here, conv)
        elif key == "clients":
            _clients(value, here, conv)
        elif key == "clientConfig":
            _client_config(value, here, conv)
        elif key == "model" and isinstance(value, dict):
            out.setdefault("model", {}).update(value)
            conv.origin[("model",)] = here
        elif key in _CARRIER_TOP:
            out[key] = value
            conv.origin[here] = here
        else:
            conv.dropped.append((here, _WHY.get(key) or _unknown(str(key))))
    return conv


def _unknown(key: str) -> str:
    import difflib

    known = sorted(_CARRIER_TOP | _ELIZA_MARKERS | {"knowledge", "plugins", "settings"})
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"unknown key{hint}"


def _provider(value: Any, here: KeyPath, conv: Conversion) -> None:
    from carrier_cli.character.checks import known_providers, supported_provider

    if not isinstance(value, str) or not value.strip():
        return
    supported = supported_provider(value)
    if supported is None:
        conv.dropped.append(
            (
                here,
                f"model provider '{value}' is not supported by Carrier "
                f"({', '.join(known_providers())}); without one the runtime "
                "uses whichever provider has a key configured",
            )
        )
        return
    conv.data.setdefault("model", {})["provider"] = supported
    conv.origin[("model", "provider")] = here


def _drop_empty(value: Any) -> Any:
    # ElizaOS files often carry `""` placeholders in lists (e.g. topics: [""]).
    if isinstance(value, list):
        return [v for v in value if not (isinstance(v, str) and not v.strip())]
    return value


def _examples(value: Any, here: KeyPath, conv: Conversion) -> Any:
    conv.origin[("message_examples",)] = here
    if not isinstance(value, list):
        return value
    conversations: list[Any] = []
    for i, conversation in enumerate(value):
        conv.origin[("message_examples", i)] = (*here, i)
        if not isinstance(conversation, list):
            conversations.append(conversation)
            continue
        turns: list[Any] = []
        for j, message in enumerate(conversation):
            src = (*here, i, j)
            dst = ("message_examples", i, j)
            conv.origin[dst] = src
            if not isinstance(message, dict):
                turns.append(message)
                continue
            turns.append(_example(message, src, dst, conv))
        conversations.append(turns)
    return conversations


def _example(message: dict[str, Any], src: KeyPath, dst: KeyPath, conv: Conversion) -> Any:
    turn: dict[str, Any] = {}
    for speaker_key in ("name", "user"):
        if speaker_key in message:
            turn["name"] = message[speaker_key]
            conv.origin[(*dst, "name")] = (*src, speaker_key)
            break
    content = message.get("content", {})
    if "text" in message and "content" not in message:  # already Carrier-shaped
        content = message
    if not isinstance(content, dict):
        turn["text"] = content
        conv.origin[(*dst, "text")] = (*src, "content")
        return turn
    base = src if content is message else (*src, "content")
    for ckey, cvalue in content.items():
        if ckey == "text":
            turn["text"] = cvalue
            conv.origin[(*dst, "text")] = (*base, "text")
        elif ckey in ("action", "actions"):
            if cvalue:
                turn["actions"] = cvalue
                conv.origin[(*dst, "actions")] = (*base, ckey)
        elif content is not message:
            conv.dropped.append(((*base, ckey), "example content other than text and actions"))
    for key in message:
        if key not in ("name", "user", "content", "text", "action", "actions"):
            conv.dropped.append(((*src, key), "not part of a Carrier example message"))
    return turn


def _knowledge(value: Any, here: KeyPath, conv: Conversion) -> Any:
    conv.origin[("knowledge",)] = here
    if not isinstance(value, list):
        return value
    items: list[Any] = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            # 0.x {id, path, content}; v1 {path, shared} or {directory, shared}.
            text = item.get("path") or item.get("directory") or item.get("content")
            if isinstance(text, str) and text.strip():
                conv.origin[("knowledge", len(items))] = (*here, index)
                items.append(text)
                extra = sorted(set(item) - {"path", "directory", "content"})
                if extra:
                    conv.dropped.append(((*here, index), f"knowledge options {extra} ignored"))
            else:
                conv.dropped.append(((*here, index), "knowledge entry without path or content"))
        elif isinstance(item, str) and not item.strip():
            continue
        else:
            conv.origin[("knowledge", len(items))] = (*here, index)
            items.append(item)
    return items


def _plugins(value: Any, here: KeyPath, conv: Conversion) -> Any:
    conv.origin[("plugins",)] = here
    if not isinstance(value, list):
        return value
    kept: list[Any] = []
    for index, item in enumerate(value):
        if isinstance(item, str) and (item.startswith("@") or "/" in item):
            conv.dropped.append(
                (
                    (*here, index),
                    f"{item} is an ElizaOS npm plugin; Carrier plugins are Python packages",
                )
            )
        else:
            conv.origin[("plugins", len(kept))] = (*here, index)
            kept.append(item)
    return kept


def _settings(value: Any, here: KeyPath, conv: Conversion) -> None:
    if not isinstance(value, dict):
        conv.data["settings"] = value
        conv.origin[("settings",)] = here
        return
    model = conv.data.setdefault("model", {})
    kept: dict[str, Any] = {}
    for key, item in value.items():
        src = (*here, key)
        if key == "model":
            model["name"] = item
            conv.origin[("model", "name")] = src
        elif key in ("smallModel", "model_small"):
            model["small"] = item
            conv.origin[("model", "small")] = src
        elif key == "embeddingModel":
            model["embedding"] = item
            conv.origin[("model", "embedding")] = src
        elif key == "modelConfig" and isinstance(item, dict):
            _model_config(item, src, conv)
        elif key == "secrets":
            _secrets(item, src, conv)
        elif key == "voice":
            conv.dropped.append((src, "text-to-speech voice; Carrier has no voice output"))
        else:
            kept[key] = item
            conv.origin[("settings", key)] = src
    if not model:
        del conv.data["model"]
    if kept:
        conv.data["settings"] = kept
        conv.origin[("settings",)] = here


def _model_config(config: dict[str, Any], here: KeyPath, conv: Conversion) -> None:
    model = conv.data.setdefault("model", {})
    for key, item in config.items():
        if key == "temperature":
            model["temperature"] = item
            conv.origin[("model", "temperature")] = (*here, key)
        elif key in ("maxOutputTokens", "max_response_length", "maxTokens"):
            model["max_tokens"] = item
            conv.origin[("model", "max_tokens")] = (*here, key)
        else:
            conv.dropped.append(((*here, key), "model option Carrier does not set"))


def _secrets(value: Any, here: KeyPath, conv: Conversion) -> None:
    if isinstance(value, dict) and any(v for v in value.values()):
        for key, item in value.items():
            if item:
                conv.secrets.append(((*here, key), str(item)))
    else:
        conv.dropped.append((here, "secrets are never copied (this one is empty)"))


def _clients(value: Any, here: KeyPath, conv: Conversion) -> None:
    if isinstance(value, dict):
        conv.data["clients"] = value
        conv.origin[("clients",)] = here
        return
    names = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if not names:
        return  # nothing is lost
    unsupported = [n for n in names if n.lower() not in ("discord", "instagram")]
    why = "Carrier picks clients when you start it; settings go under clients.discord/instagram"
    if unsupported:
        why += f"; not supported: {', '.join(unsupported)}"
    conv.dropped.append((here, f"client list [{', '.join(names)}]: {why}"))


def _client_config(value: Any, here: KeyPath, conv: Conversion) -> None:
    if not isinstance(value, dict):
        conv.dropped.append((here, "expected a mapping of client: settings"))
        return
    for client, config in value.items():
        src = (*here, client)
        if client != "discord" or not isinstance(config, dict):
            conv.dropped.append((src, f"{client} client settings have no Carrier equivalent"))
            continue
        discord = conv.data.setdefault("clients", {}).setdefault("discord", {})
        for key, item in config.items():
            target = _DISCORD_FLAGS.get(key)
            if target is None:
                conv.dropped.append(((*src, key), "Discord option Carrier does not have"))
            else:
                discord[target] = item
                conv.origin[("clients", "discord", target)] = (*src, key)
