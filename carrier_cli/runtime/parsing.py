"""Tolerant parsing of the model's answers, whole or streamed, and the one bound on asking
again when an answer does not parse.

Models wrap the XML in code fences, chat before it, forget a closing tag or answer in the
ElizaOS 0.x JSON shape. All of that still yields a reply here. Small local models (e.g.
through Ollama) often ignore the format and just talk: a reply with no tags of the format
at all is that text (action REPLY), accepted on the first answer, since asking again costs
a full model call and gets the same kind of answer. Only broken markup (a tag of the format,
or a JSON object, that yields no text and no silent choice) or an empty answer is asked
again, and at most once (`ParseAttempts`, shared by replies, posts and should-respond).
Only a fence around the XML itself is unwrapped: code blocks inside `<text>` are part of
the message and are kept verbatim.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger("carrier.runtime")

# The first answer plus at most one retry. A retry is for broken markup only (plain text is
# an answer), and a second broken answer is rarely fixed by a third call: the cost of every
# further call is a whole generation, paid on every message.
MAX_ATTEMPTS = 2

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.S)
_FENCE_MARK = re.compile(r"```")
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_-]*")
_REPLY_OPEN = re.compile(r"<(?:response|thought|actions|text)(?:\s[^>]*)?>", re.I)
_REPLY_CLOSE = re.compile(r"</(?:response|thought|actions|text)\s*>", re.I)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)
# Any tag of the reply format, opening or closing: its presence means the model tried the
# format, so an answer that still yields nothing is broken rather than plain text.
_FORMAT_TAG = re.compile(r"</?(?:response|thought|actions?|text)(?:\s[^>]*)?/?>", re.I)
_ANY_TAG = re.compile(r"</?[A-Za-z_][A-Za-z0-9_:-]*(?:\s[^>]*)?/?>")
_SILENT = {"IGNORE", "STOP"}  # NONE means "reply, no other action" (ElizaOS)


@dataclass
class ParsedReply:
    text: str | None
    thought: str | None = None
    actions: list[str] = field(default_factory=list)
    ok: bool = True  # False: broken markup or an empty answer; the caller may retry once
    plain: bool = False  # the model ignored the format: the whole answer is the text

    @property
    def silent(self) -> bool:
        """The model chose not to speak: only IGNORE/STOP (any text with them is dropped)."""
        return bool(self.actions) and all(a in _SILENT for a in self.actions)


def _tag(source: str, name: str) -> str | None:
    """Content of <name>...</name>; an unclosed tag runs to the next tag or the end."""
    match = re.search(rf"<{name}(?:\s[^>]*)?>(.*?)</{name}\s*>", source, re.S | re.I)
    if match:
        return match.group(1)
    opened = re.search(rf"<{name}(?:\s[^>]*)?>", source, re.I)
    if not opened:
        return None
    rest = source[opened.end() :]
    if name == "text":  # the text is usually last; only a closing wrapper can follow it
        rest = re.sub(r"</(response|output)\s*>.*\Z", "", rest, flags=re.S | re.I)
        return rest
    nxt = re.search(r"</?(thought|actions|text|providers|response)\b", rest, re.I)
    return rest[: nxt.start()] if nxt else rest


def _unwrap_fence(source: str) -> str:
    """The reply XML out of a code fence wrapped around it, e.g. "```xml\n<response>...```".

    The source is returned unchanged when its first reply tag is not inside a fence, so code
    blocks in the `<text>` (and anywhere else) are never mistaken for a wrapper.
    """
    first = _REPLY_OPEN.search(source)
    if first is None:
        return source
    marks = [m.start() for m in _FENCE_MARK.finditer(source)]
    before = [p for p in marks if p < first.start()]
    if len(before) % 2 == 0:  # every fence before the XML is closed: it is not fenced
        return source
    opener = _FENCE_OPEN.match(source, before[-1])
    start = opener.end() if opener else before[-1] + 3
    closes = list(_REPLY_CLOSE.finditer(source, start))
    if closes:  # the wrapper's closing fence is the first one after the XML
        after = [p for p in marks if p >= closes[-1].end()]
        end = after[0] if after else len(source)
    else:  # nothing closed (cut off): fences in the text pair up, an odd one out closes
        inside = [p for p in marks if p >= start]
        end = inside[-1] if len(inside) % 2 == 1 else len(source)
    return source[start:end].strip()


def _clean(value: str) -> str:
    value = _CDATA.sub(lambda m: m.group(1), value)
    return html.unescape(value).strip()


def split_actions(raw: str | list[object] | None) -> list[str]:
    """ "REPLY, send_image" -> ["REPLY", "SEND_IMAGE"]; accepts lists and nested <action> tags."""
    if raw is None:
        return []
    if isinstance(raw, list):
        parts = [str(p) for p in raw]
    else:
        inner = re.findall(r"<action>(.*?)</action>", raw, re.S | re.I)
        parts = inner or re.split(r"[,\n;]", raw)
    names = [p.strip().strip("`'\"[]").strip().upper() for p in parts]
    return [n for n in names if n]


def _from_json(source: str) -> ParsedReply | None:
    start, end = source.find("{"), source.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(source[start : end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict) or not any(k in data for k in ("text", "actions", "action")):
        return None
    actions = split_actions(data.get("actions", data.get("action")))
    text = data.get("text")
    thought = data.get("thought")
    return ParsedReply(
        text=str(text).strip() if text else None,
        thought=str(thought).strip() if thought else None,
        actions=actions,
    )


def parse_reply(raw: str) -> ParsedReply:
    """Parse one model reply; `ok=False` when it is broken markup (or empty).

    A reply with no tag of the format and no JSON object is plain text: the model answered
    without the format, and its whole answer (stripped, otherwise verbatim: code blocks and
    `<`, `&` in it are the model's own) is the text, with action REPLY.
    """
    source = _unwrap_fence(raw.strip())
    text = _tag(source, "text")
    thought = _tag(source, "thought")
    actions_raw = _tag(source, "actions")
    if text is None and thought is None and actions_raw is None:
        fenced = sorted(_FENCE.findall(source), key=len, reverse=True)
        candidates = (source, *fenced)
        for candidate in candidates:  # the JSON may be fenced, with chatter around
            parsed = _from_json(candidate)
            if parsed is not None and (parsed.text or parsed.silent):
                if parsed.silent:
                    parsed.text = None
                return parsed
        attempted_json = any(c.strip().startswith("{") for c in candidates)
        if not source or _FORMAT_TAG.search(source) or attempted_json:
            return ParsedReply(text=None, ok=False)
        return ParsedReply(text=source, actions=["REPLY"], plain=True)
    reply = ParsedReply(
        text=_clean(text) if text is not None else None,
        thought=_clean(thought) if thought is not None else None,
        actions=split_actions(_clean(actions_raw)) if actions_raw is not None else [],
    )
    if not reply.text or reply.silent:
        reply.text = None
    if reply.text and not reply.actions:
        reply.actions = ["REPLY"]
    reply.ok = bool(reply.text) or reply.silent
    return reply


def raw_fallback(raw: str) -> str:
    """What to say when every attempt failed to parse: the raw output minus obvious markup
    (a fence around XML included; code blocks the model wrote stay)."""
    text = _unwrap_fence(raw.strip())
    # The format's private fields are never said aloud: a broken reply such as
    # "<response><thought>the user seems upset..." must not send the model's reasoning
    # (or its action list) to the chat. An unclosed one runs to the next <text> or the end.
    text = _PRIVATE_FIELD.sub("", text)
    text = re.sub(r"</?[A-Za-z_][A-Za-z0-9_]*(?:\s[^>]*)?>", "", text)
    return html.unescape(text).strip()


_PRIVATE_FIELD = re.compile(
    r"<(thought|actions|action|providers)\b[^>]*>.*?(?:</\1\s*>|(?=<text\b)|\Z)",
    re.S | re.I,
)


_YES_NO = re.compile(r"^[\W_]*(yes|no)\b", re.I)


def parse_decision(raw: str) -> str | None:
    """The first RESPOND / IGNORE / STOP word in a should-respond answer; failing that, an
    answer that starts with yes (RESPOND) or no (IGNORE), tags and punctuation aside."""
    match = re.search(r"\b(RESPOND|IGNORE|STOP)\b", raw.upper())
    if match:
        return match.group(1)
    yes_no = _YES_NO.match(html.unescape(_ANY_TAG.sub(" ", raw)))
    if yes_no:
        return "RESPOND" if yes_no.group(1).lower() == "yes" else "IGNORE"
    return None


@dataclass
class ParsedDecision:
    word: str | None  # RESPOND / IGNORE / STOP, None when the answer names none
    ok: bool = True  # False: broken markup or an empty answer; the caller may retry once


def parse_should_respond(raw: str) -> ParsedDecision:
    """A should-respond answer. Plain words without a decision are an answer too (the
    caller reads them as IGNORE, no retry); only tags without a decision, or nothing at
    all, are broken (a cut-off `<response><thought>...` is the usual case)."""
    word = parse_decision(raw)
    if word is not None:
        return ParsedDecision(word)
    return ParsedDecision(None, ok=bool(raw.strip()) and not _ANY_TAG.search(raw))


class ParseAttempts:
    """The one bound on asking the model again because its answer did not parse.

        attempts = ParseAttempts("reply")
        for attempt in attempts:      # 1, then 2 only if attempt 1 was marked failed
            raw = await ask_model()
            if parse(raw).ok:
                break
            attempts.failed()

    The loop ends after an answer that was not marked `failed()` (so a caller can never
    make an extra call by forgetting to break), or after `limit` attempts.
    """

    def __init__(self, purpose: str, limit: int = MAX_ATTEMPTS) -> None:
        self.purpose = purpose
        self.limit = limit
        self.failures = 0
        self._again = True
        self._attempt = 0

    def __iter__(self) -> Iterator[int]:
        while self._again and self._attempt < self.limit:
            self._attempt += 1
            self._again = False
            yield self._attempt

    def failed(self, *, retry: bool = True) -> bool:
        """Mark this attempt's answer as broken; True when one more attempt follows.
        `retry=False`: broken, but asking again would not help (e.g. text already shown)."""
        self.failures += 1
        self._again = retry and self._attempt < self.limit
        log.debug(
            "%s attempt %d/%d did not parse; %s",
            self.purpose,
            self._attempt,
            self.limit,
            "asking again" if self._again else "giving up",
        )
        return self._again


def parse_facts(raw: str) -> list[str]:
    """Facts from `<fact>` tags, or a JSON list, or bullet lines as a last resort."""
    source = raw.strip()
    fenced = _FENCE.findall(source)
    if fenced:
        source = max(fenced, key=len).strip()
    tagged = re.findall(r"<fact(?:\s[^>]*)?>(.*?)</fact>", source, re.S | re.I)
    if tagged or re.search(r"<facts\b", source, re.I):
        return [f for f in (_clean(t) for t in tagged) if f]
    if source.startswith("["):
        try:
            data = json.loads(source)
        except ValueError:
            data = None
        if isinstance(data, list):
            facts = [d.get("claim") or d.get("fact") if isinstance(d, dict) else d for d in data]
            return [str(f).strip() for f in facts if f and str(f).strip()]
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", ln) for ln in source.splitlines()]
    bullets = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("<")]
    return bullets if len(bullets) <= 10 else []


class StreamingTextExtractor:
    """Feeds streamed chunks of a `<response>` and returns the new `<text>` characters.

    Holds back a tail that may be the start of `</text>` or of an `&entity;`, so what is
    shown while streaming equals the parsed text at the end.
    """

    _OPEN = re.compile(r"<text(?:\s[^>]*)?>", re.I)
    _CLOSE = "</text>"

    def __init__(self) -> None:
        self.buffer = ""
        self._start: int | None = None
        self._emitted = 0  # characters of the text section consumed (raw)
        self._spoke = False  # returned non-blank text yet
        self.finished = False

    @property
    def emitted_any(self) -> bool:
        return self._spoke

    def feed(self, chunk: str) -> str:
        self.buffer += chunk
        if self.finished:
            return ""
        if self._start is None:
            match = self._OPEN.search(self.buffer)
            if not match:
                return ""
            self._start = match.end()
        body = self.buffer[self._start :]
        end = body.lower().find(self._CLOSE)
        if end >= 0:
            self.finished = True
            safe = end
        else:
            safe = len(body)
            lt = body.rfind("<", max(0, len(body) - len(self._CLOSE) + 1))
            if lt >= 0:
                safe = min(safe, lt)
            amp = body.rfind("&", max(0, len(body) - 10))
            if amp >= 0 and ";" not in body[amp:]:
                safe = min(safe, amp)
        if safe <= self._emitted:
            return ""
        piece = body[self._emitted : safe]
        self._emitted = safe
        if not self._spoke:
            piece = piece.lstrip()
            self._spoke = bool(piece)
        return html.unescape(piece)
