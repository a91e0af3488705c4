"""Tolerant reply parsing and the streaming <text> extractor."""

from __future__ import annotations

import pytest

from carrier_cli.runtime.parsing import (
    MAX_ATTEMPTS,
    ParseAttempts,
    StreamingTextExtractor,
    parse_decision,
    parse_facts,
    parse_reply,
    parse_should_respond,
    raw_fallback,
    split_actions,
)


def test_well_formed_reply():
    parsed = parse_reply(
        "<response><thought>t</thought><actions>REPLY</actions><text>Hi!</text></response>"
    )
    assert (parsed.ok, parsed.text, parsed.thought, parsed.actions) == (True, "Hi!", "t", ["REPLY"])


def test_code_fence_and_chatter_around_the_xml():
    raw = (
        "Sure! Here is my answer:\n```xml\n<response>\n  <thought>hmm</thought>\n"
        "  <actions>REPLY, continue</actions>\n  <text>Line one\nLine two</text>\n"
        "</response>\n```\n"
        "Let me know!"
    )
    parsed = parse_reply(raw)
    assert parsed.ok
    assert parsed.text == "Line one\nLine two"
    assert parsed.actions == ["REPLY", "CONTINUE"]


CODE = "Try this:\n\n```python\nprint('hi')\n```\n\nand then:\n```\n$ run it\n```\nDone."


def test_code_blocks_inside_the_text_are_kept_verbatim():
    raw = f"<response><thought>t</thought><actions>REPLY</actions><text>{CODE}</text></response>"
    parsed = parse_reply(raw)
    assert (parsed.ok, parsed.text, parsed.thought, parsed.actions) == (
        True,
        CODE,
        "t",
        ["REPLY"],
    )


@pytest.mark.parametrize(
    "raw",
    [
        f"```xml\n<response><thought>t</thought><text>{CODE}</text></response>\n```",
        f"Here:\n```xml\n<response><text>{CODE}</text></response>\n```\nBye",
        f"```\n<response><thought>t</thought><text>{CODE}</text>\n```",
        f"```xml\n<response><text>{CODE}\n```",  # cut off: the odd fence is the wrapper's
        f"```xml\n<response><text>{CODE}",  # cut off before the wrapper closed
        f"<response><text>{CODE}",
        f"chatter ```a``` first\n<text>{CODE}</text> trailing",
    ],
    ids=["fenced", "chatter", "no-close", "cut-fenced", "cut-open", "cut-bare", "inline-fence"],
)
def test_a_fence_around_the_xml_is_unwrapped_but_not_fences_in_the_text(raw):
    parsed = parse_reply(raw)
    assert parsed.ok and parsed.text == CODE


def test_missing_section_with_code_in_the_text():
    parsed = parse_reply(f"<response><actions>REPLY</actions><text>{CODE}")
    assert parsed.ok and parsed.text == CODE and parsed.thought is None


def test_text_outside_a_response_wrapper():
    parsed = parse_reply("blah <thought>x</thought> <text>just this</text> trailing")
    assert parsed.text == "just this" and parsed.actions == ["REPLY"]


def test_missing_actions_defaults_to_reply():
    assert parse_reply("<response><text>hey</text></response>").actions == ["REPLY"]


def test_unclosed_text_runs_to_the_end():
    parsed = parse_reply("<response><thought>a</thought><text>cut off mid sen")
    assert parsed.ok and parsed.text == "cut off mid sen"
    assert parse_reply("<response><text>done</response>").text == "done"


def test_unclosed_thought_stops_at_the_next_tag():
    parsed = parse_reply("<response><thought>reasoning<actions>REPLY</actions><text>x</text>")
    assert parsed.thought == "reasoning" and parsed.text == "x"


def test_entities_and_cdata():
    assert parse_reply("<text>fish &amp; chips &lt;3</text>").text == "fish & chips <3"
    assert parse_reply("<text><![CDATA[a <b> c]]></text>").text == "a <b> c"


def test_silent_choice_is_ok_without_text():
    parsed = parse_reply("<response><thought>no</thought><actions>IGNORE</actions></response>")
    assert parsed.ok and parsed.silent and parsed.text is None


def test_missing_text_with_reply_action_is_a_failure():
    assert not parse_reply("<response><thought>x</thought><actions>REPLY</actions></response>").ok


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  \n ",
        "{}",
        '{"text": "cut off',
        '```json\n{"thought": "x"}\n```',
        "<response></response>",
        "<response>",
        "<response><thought>cut off mid",
        "words </text> after a stray close",
        "<action>REPLY</action>",
    ],
)
def test_broken_markup_or_nothing_is_a_failure(raw):
    assert not parse_reply(raw).ok


@pytest.mark.parametrize(
    "raw",
    [
        "plain words, no tags",
        "```\nstill nothing\n```",
        "Hello there.",
        "<b>bold</b> & 1 < 2, in plain text",
        "Line one\n\nLine two",
    ],
)
def test_a_reply_without_tags_of_the_format_is_the_text(raw):
    parsed = parse_reply("\n " + raw + "  \n")
    assert (parsed.ok, parsed.plain, parsed.text, parsed.actions) == (True, True, raw, ["REPLY"])


def test_eliza_0x_json_shape():
    parsed = parse_reply('```json\n{"user": "Eliza", "text": "hello", "action": "CONTINUE"}\n```')
    assert parsed.ok and parsed.text == "hello" and parsed.actions == ["CONTINUE"]


def test_split_actions_variants():
    assert split_actions("reply,  send_image ; none") == ["REPLY", "SEND_IMAGE", "NONE"]
    assert split_actions("<action>REPLY</action><action>roll</action>") == ["REPLY", "ROLL"]
    assert split_actions(["Reply"]) == ["REPLY"]
    assert split_actions("[REPLY]") == ["REPLY"]


def test_raw_fallback_strips_markup():
    assert raw_fallback("```\n<text>hi</text> there\n```") == "hi there"


def test_raw_fallback_never_says_the_private_fields():
    assert raw_fallback("<response><thought>they seem upset</thought><text>Sorry!") == "Sorry!"
    assert raw_fallback("<response><thought>private reasoning, never closed") == ""
    assert raw_fallback("<actions>REPLY</actions><thought>hm<text>Hi") == "Hi"


def test_raw_fallback_keeps_code_blocks_the_model_wrote():
    raw = "Sure:\n```python\nprint(1)\n```"
    assert parse_reply(raw).text == raw  # plain text: verbatim, fences and all
    assert raw_fallback(raw) == raw


def test_eliza_0x_json_shape_with_chatter_around_the_fence():
    raw = 'Ok {see}:\n```json\n{"text": "hello", "actions": ["REPLY"]}\n```\nthanks'
    parsed = parse_reply(raw)
    assert parsed.ok and parsed.text == "hello" and parsed.actions == ["REPLY"]


def test_decisions():
    assert parse_decision("RESPOND") == "RESPOND"
    assert parse_decision("<action>ignore</action>") == "IGNORE"
    assert parse_decision("I think we should STOP now") == "STOP"
    assert parse_decision("responding") is None
    assert parse_decision("Yes") == parse_decision("yes, it is for her.") == "RESPOND"
    assert parse_decision("No.") == parse_decision("<answer>no</answer>") == "IGNORE"
    assert parse_decision("Nobody asked") is None and parse_decision("Not sure") is None


@pytest.mark.parametrize(
    ("raw", "word", "ok"),
    [
        ("RESPOND", "RESPOND", True),
        ("no", "IGNORE", True),
        ("I am not sure.", None, True),  # an answer, just not a decision: no retry
        ("<response><thought>The user is", None, False),  # cut off in the markup
        ("", None, False),
    ],
)
def test_should_respond_answers(raw, word, ok):
    answer = parse_should_respond(raw)
    assert (answer.word, answer.ok) == (word, ok)


def test_parse_attempts_bound():
    attempts = ParseAttempts("t")
    assert [a for a in attempts] == [1]  # an answer not marked failed ends the loop
    attempts = ParseAttempts("t")
    seen = []
    for attempt in attempts:
        seen.append(attempt)
        attempts.failed()
    assert seen == [1, 2] and attempts.failures == 2 and MAX_ATTEMPTS == 2
    attempts = ParseAttempts("t")
    seen = []
    for attempt in attempts:
        seen.append(attempt)
        assert attempts.failed(retry=False) is False
    assert seen == [1]


def test_facts():
    assert parse_facts("<facts><fact>A likes b.</fact><fact> </fact></facts>") == ["A likes b."]
    assert parse_facts("<facts></facts>") == []
    assert parse_facts('[{"claim": "X is 30."}, "Y has a dog."]') == ["X is 30.", "Y has a dog."]
    assert parse_facts("- one\n- two") == ["one", "two"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 100])
def test_streaming_extractor_matches_parse(size):
    raw = (
        "<response><thought>x &lt; y</thought><actions>REPLY</actions>"
        "<text>\n  Fish &amp; chips, <b>bold</b> and 3 &lt; 4.</text></response>"
    )
    extractor = StreamingTextExtractor()
    out = "".join(extractor.feed(raw[i : i + size]) for i in range(0, len(raw), size))
    assert out == parse_reply(raw).text == "Fish & chips, <b>bold</b> and 3 < 4."
    assert extractor.finished


def test_streaming_extractor_without_text_emits_nothing():
    extractor = StreamingTextExtractor()
    assert extractor.feed("plain answer with no tags") == ""
    assert not extractor.emitted_any


def test_ignore_wins_over_text_but_none_does_not():
    parsed = parse_reply("<actions>IGNORE</actions><text>meh, whatever</text>")
    assert parsed.ok and parsed.silent and parsed.text is None
    parsed = parse_reply("<actions>NONE</actions><text>Sure.</text>")
    assert parsed.ok and not parsed.silent and parsed.text == "Sure."
    assert not parse_reply("<actions>NONE</actions>").ok
