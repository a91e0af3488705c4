"""Templates: character overrides (Carrier and ElizaOS names) and the {{name}} renderer."""

from __future__ import annotations

import logging

from carrier_cli.runtime.templates import DEFAULTS, render, resolve_templates


def test_render_fills_and_blanks(caplog):
    with caplog.at_level(logging.DEBUG, logger="carrier.runtime.templates"):
        out = render("Hi {{ name }}, {{missing}}! {{none}}.", {"name": "Bob", "none": None})
    assert out == "Hi Bob, ! ."
    messages = [r.getMessage() for r in caplog.records]
    assert any("missing" in m for m in messages)
    assert not any("{{none}}" in m for m in messages)  # a known key with no value is fine


def test_render_collapses_blank_runs():
    assert render("a\n{{x}}\n\n\n{{y}}\nb", {}) == "a\n\nb"


def test_overrides_by_carrier_and_eliza_names():
    templates = resolve_templates(
        {
            "messageHandlerTemplate": "M {{agentName}}",
            "should_respond": "S",
            "unknown": "U",
            "postCreationTemplate": "  ",
        }
    )
    assert templates["message_handler"] == "M {{agentName}}"
    assert templates["should_respond"] == "S"
    assert templates["post_creation"] == DEFAULTS["post_creation"]  # blank override ignored
    assert "unknown" not in templates
