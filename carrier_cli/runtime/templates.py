"""Prompt templates and the `{{name}}` renderer.

Every template can be overridden from a character file (`templates:`), under its Carrier
name (`message_handler`) or the ElizaOS name (`messageHandlerTemplate`), so ElizaOS
characters that carry their own prompts keep working. A placeholder with no value renders
empty (and is logged at DEBUG) rather than failing a turn: a typo in a character's
template should degrade a reply, not take the bot down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("carrier.runtime.templates")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

MESSAGE_HANDLER = """\
<task>Generate dialog and actions for the character {{agentName}}.</task>

<character>
# About {{agentName}}
{{bio}}
{{lore}}
{{traits}}
{{topics}}

{{characterMessageExamples}}

{{messageDirections}}
</character>

<providers>
{{knowledge}}
{{senderFacts}}
{{providers}}
{{currentTime}}
</providers>

<actions>
{{actions}}
{{actionExamples}}
</actions>

<conversation>
{{recentMessages}}
</conversation>

<instructions>
Write a short thought about the conversation, then choose actions and write {{agentName}}'s \
next message to {{senderName}} in the voice and style described above. Use REPLY to answer, \
IGNORE to stay silent, or other actions from: {{actionNames}}.
</instructions>

<output>
Respond using this XML format and nothing else:
<response>
  <thought>your private reasoning</thought>
  <actions>REPLY</actions>
  <text>the message {{agentName}} sends</text>
</response>
</output>
"""

SHOULD_RESPOND = """\
<task>Decide whether {{agentName}} should respond to the last message in the conversation.</task>

<character>
{{bio}}
</character>

<conversation>
{{recentMessages}}
</conversation>

<rules>
- RESPOND if the message is addressed to {{agentName}}, continues a conversation with \
{{agentName}}, or is about something {{agentName}} cares about.
- IGNORE if the message is not for {{agentName}}, is small talk between others, or adds nothing.
- STOP if someone asks {{agentName}} to stop, be quiet, or leave the conversation.
</rules>

<output>Answer with exactly one word: RESPOND, IGNORE or STOP.</output>
"""

FACT_EXTRACTION = """\
<task>Extract lasting facts about the people {{agentName}} is talking with.</task>

<known_facts>
{{knownFacts}}
</known_facts>

<conversation>
{{recentMessages}}
</conversation>

<instructions>
List new facts stated in the conversation about {{senderName}} or other participants \
(who they are, what they like, what they do, plans, relationships). Skip facts that are \
already known, opinions of {{agentName}}, and small talk. Each fact is one short sentence \
naming the person.
</instructions>

<output>
Respond using this XML format and nothing else (an empty <facts></facts> if there are none):
<facts>
  <fact>Alice lives in Lisbon.</fact>
</facts>
</output>
"""

POST_CREATION = """\
<task>Write a post for {{agentName}}.</task>

<character>
# About {{agentName}}
{{bio}}
{{lore}}
{{traits}}
{{topics}}

{{characterPostExamples}}

{{postDirections}}
</character>

<instructions>
Write one new post in {{agentName}}'s voice about {{postTopic}}. {{extraInstructions}}
No hashtag spam, no quotes around the post, no commentary.
</instructions>

<output>
Respond using this XML format and nothing else:
<response>
  <thought>what the post is going for</thought>
  <text>the post</text>
</response>
</output>
"""

DEFAULTS: dict[str, str] = {
    "message_handler": MESSAGE_HANDLER,
    "should_respond": SHOULD_RESPOND,
    "fact_extraction": FACT_EXTRACTION,
    "post_creation": POST_CREATION,
}

# ElizaOS (0.x and v1) names accepted in a character's `templates:` for the same prompts.
ALIASES: dict[str, str] = {
    "messageHandlerTemplate": "message_handler",
    "messageHandler": "message_handler",
    "shouldRespondTemplate": "should_respond",
    "discordShouldRespondTemplate": "should_respond",
    "shouldRespond": "should_respond",
    "factsTemplate": "fact_extraction",
    "reflectionTemplate": "fact_extraction",
    "factExtractionTemplate": "fact_extraction",
    "postCreationTemplate": "post_creation",
    "twitterPostTemplate": "post_creation",
    "postTemplate": "post_creation",
}


def resolve_templates(overrides: Mapping[str, Any] | None) -> dict[str, str]:
    """The default templates with a character's overrides applied (unknown names ignored)."""
    templates = dict(DEFAULTS)
    for key, value in (overrides or {}).items():
        name = ALIASES.get(key, key)
        if name in templates and isinstance(value, str) and value.strip():
            templates[name] = value
        elif name not in templates:
            log.debug("character template %r is not used by Carrier; ignored", key)
    return templates


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill `{{name}}` placeholders; unknown or None values render empty."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        value = values.get(key)
        if value is None:
            if key not in values:
                log.debug("template placeholder {{%s}} has no value; rendered empty", key)
            return ""
        return str(value)

    text = _PLACEHOLDER.sub(fill, template)
    # Empty sections leave runs of blank lines; collapse them so prompts stay compact.
    return re.sub(r"\n{3,}", "\n\n", text)
