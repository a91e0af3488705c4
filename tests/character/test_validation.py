"""Problems in character files: every one reported, each with file:line:column."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from carrier_cli.character import load_character, validate_character_file
from carrier_cli.errors import InputError

Write = Callable[[str, str], Path]


def test_wrong_type_points_at_the_key(write: Write) -> None:
    path = write("c.yaml", "name: Ada\nmodel:\n  temperature: hot\nbio: [ok]\n")
    report = validate_character_file(path)
    assert not report.ok
    [problem] = report.errors
    assert (problem.mark.file, problem.mark.line, problem.mark.column) == (path, 3, 3)
    assert problem.path == "model.temperature"
    assert "expected a number" in problem.message and "'hot'" in problem.message
    assert str(problem).startswith(f"{path}:3:3: error: model.temperature:")


def test_every_problem_is_reported_at_once(write: Write) -> None:
    path = write(
        "c.yaml",
        "name: Ada\nbio:\n  - fine\n  - {nested: map}\nstyle:\n  chat: 5\n"
        "message_examples:\n  - - name: u\n      text: [1]\n",
    )
    report = validate_character_file(path)
    where = {(p.path, p.mark.line, p.mark.column) for p in report.errors}
    assert where == {
        ("bio[1]", 4, 5),
        ("style.chat", 6, 3),
        ("message_examples[0][0].text", 9, 7),
    }
    assert any("quote the text" in p.message for p in report.errors)


def test_missing_name(write: Write) -> None:
    report = validate_character_file(write("c.yaml", "bio: [hello]\n"))
    [problem] = report.errors
    assert problem.path == "name" and "required" in problem.message
    assert (problem.mark.line, problem.mark.column) == (1, 1)


@pytest.mark.parametrize(
    ("name", "text", "line", "col", "words"),
    [
        ("c.yaml", "name: Ada\nbio: [a, b\nlore: []\n", 3, 5, "invalid YAML"),
        ("c.yaml", "name: Ada\n  bio: x\n", 2, 6, "invalid YAML"),
        ("c.json", '{"name": "Ada",\n "bio": ["a" "b"]}\n', 2, 14, "invalid JSON"),
    ],
)
def test_syntax_errors_have_positions(
    write: Write, name: str, text: str, line: int, col: int, words: str
) -> None:
    report = validate_character_file(write(name, text))
    [problem] = report.errors
    assert words in problem.message
    assert (problem.mark.line, problem.mark.column) == (line, col)


def test_tab_indented_json_keeps_positions(write: Write) -> None:
    path = write("c.json", '{\n\t"name": "Ada",\n\t"bio": 7\n}\n')
    [problem] = validate_character_file(path).errors
    assert (problem.path, problem.mark.line, problem.mark.column) == ("bio", 3, 2)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_empty_or_non_mapping_file(write: Write, text: str) -> None:
    report = validate_character_file(write("c.yaml", text))
    assert len(report.errors) == 1
    assert report.errors[0].mark.line == 1


def test_unknown_keys_warn_with_suggestions(write: Write) -> None:
    path = write(
        "c.yaml",
        "name: Ada\nadjectivs: [kind]\nmodel:\n  provder: openai\nmessageExample: []\n"
        "zzzzqqq: 1\ntemplates:\n  messageHandlerTemplat: hi\n",
    )
    report = validate_character_file(path)
    assert report.ok and report.character is not None
    messages = {(p.mark.line, p.message) for p in report.warnings}
    assert (2, "unknown key `adjectivs` (did you mean `adjectives`?)") in messages
    assert (4, "unknown key `provder` in model (did you mean `provider`?)") in messages
    assert any(line == 6 and "valid keys:" in m for line, m in messages)
    assert any(line == 8 and "messageHandlerTemplate" in m for line, m in messages)
    strict = validate_character_file(path, strict=True)
    assert not strict.ok and len(strict.errors) == len(report.warnings)


def test_camel_case_key_in_carrier_file_suggests_snake_case(write: Write) -> None:
    report = validate_character_file(
        write("c.yaml", "name: Ada\npost_examples: []\nstyle:\n  All: [x]\n")
    )
    assert "did you mean `all`" in report.warnings[0].message


@pytest.mark.parametrize(
    ("yaml_text", "line"),
    [
        ("name: Ada\nsettings:\n  helper: sk-abcdefghijklmnopqrstuvwxyz0123\n", 3),
        ("name: Ada\nsettings:\n  discord_token: abc.def.ghi\n", 3),
        ("name: Ada\nsettings:\n  nested:\n    password: hunter22\n", 4),
        ("name: Ada\nknowledge:\n  - sk-ant-abcdefghijklmnopqrstuvwxyz0123\n", 3),
    ],
)
def test_secret_looking_values_warn_without_showing_them(
    write: Write, yaml_text: str, line: int
) -> None:
    report = validate_character_file(write("c.yaml", yaml_text))
    [warning] = report.warnings
    assert warning.mark.line == line
    assert "carrier keys set" in warning.message
    secret = yaml_text.rsplit(" ", 1)[-1].strip()
    assert secret not in str(warning)


def test_non_secret_lookalikes_do_not_warn(write: Write) -> None:
    text = (
        "name: Ada\nmodel:\n  max_tokens: 500\nclients:\n  discord:\n"
        "    token_key: discord:ada\nbio: [Ada keeps a password manager and loves tokens.]\n"
    )
    assert validate_character_file(write("c.yaml", text)).warnings == []


def test_missing_knowledge_file_warns(write: Write) -> None:
    write("docs/real.md", "hi")
    report = validate_character_file(
        write("c.yaml", "name: Ada\nknowledge: [docs/real.md, docs/gone.md, plain fact]\n")
    )
    [warning] = report.warnings
    assert warning.path == "knowledge[1]" and "does not exist" in warning.message


def test_load_character_raises_input_error_listing_everything(write: Write) -> None:
    path = write("c.yaml", "bio: 5\nmodel: {temperature: x}\n")
    with pytest.raises(InputError) as caught:
        load_character(path)
    message = str(caught.value)
    assert f"{path}:1:1: name" in message
    assert f"{path}:2:9: model.temperature" in message
    assert caught.value.exit_code == 2


def test_load_missing_file() -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_character(Path("nope.yaml"))


def test_duplicate_keys_warn(write: Write) -> None:
    report = validate_character_file(write("c.yaml", "name: A\nname: B\n"))
    assert report.character is not None and report.character.name == "B"
    assert report.warnings[0].mark.line == 2 and "duplicate" in report.warnings[0].message


def test_boolean_gotcha_is_explained(write: Write) -> None:
    report = validate_character_file(write("c.yaml", "name: Ada\nadjectives: [kind, yes]\n"))
    assert "quote" in report.errors[0].message and report.errors[0].path == "adjectives[1]"


def test_json_with_bom_and_escaped_emoji(write: Write) -> None:
    path = write("e.json", '\ufeff{"name": "Emo \\ud83d\\ude00", "bio": "a\\/b"}')
    character = load_character(path)
    assert character.name == "Emo 😀" and character.bio == ["a/b"]


def test_problem_codes(write: Write) -> None:
    path = write("c.yaml", "name: A\nbiox: 1\nsettings: {api_key: abcdef123456}\n")
    codes = sorted(p.code for p in validate_character_file(path).warnings)
    assert codes == ["secret", "unknown-key"]
    assert validate_character_file(write("s.yaml", "a: [")).errors[0].code == "syntax"


def test_unsupported_provider_is_an_error(write: Write) -> None:
    report = validate_character_file(write("c.yaml", "name: A\nmodel:\n  provider: groq\n"))
    [problem] = report.errors
    assert (problem.path, problem.mark.line, problem.code) == ("model.provider", 3, "provider")
    assert "anthropic" in problem.message
    ok = validate_character_file(write("d.yaml", "name: A\nmodel: {provider: Claude}\n"))
    assert ok.character is not None and ok.character.model.provider == "claude"


def test_json_that_yaml_cannot_read_still_loads(write: Write) -> None:
    # YAML limits implicit keys to 1024 characters; JSON does not. Such a file loads through
    # the JSON parser (without positions: problems then point at line 1).
    path = write("long.json", json.dumps({"name": "x", "settings": {"k" * 1100: 1}, "bio": 5}))
    [problem] = validate_character_file(path).errors
    assert (problem.path, problem.mark.line) == ("bio", 1)
