"""The reply splitter: a pure function, so tested exhaustively here rather than end to end."""

from __future__ import annotations

import random
import re

import pytest

from carrier_cli.clients.discord.split import DISCORD_LIMIT, split_message

FENCE_LINE = re.compile(r"^[ \t]*```.*$", re.MULTILINE)


def fence_lines(chunk: str) -> list[str]:
    return [
        m.group(0).strip()
        for m in FENCE_LINE.finditer(chunk)
        if "```" not in m.group(0).strip()[3:]
    ]


def essence(text: str) -> str:
    """The text without fence lines and whitespace: what must survive splitting."""
    return re.sub(r"\s+", "", FENCE_LINE.sub("", text))


def check_invariants(text: str, chunks: list[str], limit: int = DISCORD_LIMIT) -> None:
    assert chunks, "a non-empty text gives at least one chunk"
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
        assert chunk.strip() == chunk.strip("\n").strip() and chunk.strip()
    assert essence("\n".join(chunks)) == essence(text)
    if len(fence_lines(text)) % 2 == 0:
        for chunk in chunks:
            assert len(fence_lines(chunk)) % 2 == 0, f"unbalanced fences in {chunk[:80]!r}"


def words(rng: random.Random, n: int) -> str:
    vocab = ["carrier", "memory", "agent", "discord", "room", "the", "a", "of", "message"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def sentence(rng: random.Random) -> str:
    return words(rng, rng.randint(4, 25)).capitalize() + rng.choice([".", "!", "?"])


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def code_block(rng: random.Random, lines: int, lang: str = "python") -> str:
    body = "\n".join(f"    value_{i} = compute({i}, {words(rng, 3)!r})" for i in range(lines))
    return f"```{lang}\n{body}\n```"


@pytest.mark.parametrize("text", ["hello", "a" * 2000, "line one\n\nline two", "  indented"])
def test_short_text_is_one_chunk(text: str) -> None:
    assert split_message(text) == [text.rstrip()]


@pytest.mark.parametrize("text", ["", "\n\n", "   \n  "])
def test_blank_text_gives_no_chunks(text: str) -> None:
    assert split_message(text) == []


def test_prefers_paragraph_breaks() -> None:
    first, second = "A" * 1200 + ".", "B" * 1200 + "."
    assert split_message(f"{first}\n\n{second}") == [first, second]


def test_small_paragraph_break_loses_to_a_fuller_sentence_cut() -> None:
    rng = random.Random(1)
    text = "Short intro.\n\n" + paragraph(rng, 60)
    chunks = split_message(text)
    assert len(chunks[0]) > DISCORD_LIMIT // 3
    assert chunks[0].endswith((".", "!", "?"))
    check_invariants(text, chunks)


def test_falls_back_to_sentences_then_words() -> None:
    sentences = ["Word " * 100 + "end." for _ in range(5)]  # each ~504 chars
    text = " ".join(sentences)
    chunks = split_message(text)
    assert all(c.endswith("end.") for c in chunks)
    check_invariants(text, chunks)
    no_sentences = "word " * 1000
    chunks = split_message(no_sentences)
    assert all(c.endswith("word") for c in chunks)
    check_invariants(no_sentences, chunks)


def test_one_enormous_word_is_cut_hard() -> None:
    text = "x" * 4500
    chunks = split_message(text)
    assert [len(c) for c in chunks] == [2000, 2000, 500]


def test_code_block_that_fits_is_never_cut() -> None:
    rng = random.Random(2)
    code = code_block(rng, 30)
    assert len(code) < DISCORD_LIMIT
    text = paragraph(rng, 12) + "\n\n" + code + "\n\n" + paragraph(rng, 12)
    chunks = split_message(text)
    assert any(code in chunk for chunk in chunks), "the code block stayed whole"
    check_invariants(text, chunks)


def test_long_code_block_is_closed_and_reopened_with_its_language() -> None:
    rng = random.Random(3)
    code = code_block(rng, 120, "rust")
    assert len(code) > 2 * DISCORD_LIMIT
    chunks = split_message("Here you go:\n\n" + code + "\n\nThat's all.")
    check_invariants("Here you go:\n\n" + code + "\n\nThat's all.", chunks)
    code_chunks = [c for c in chunks if "value_" in c]
    assert len(code_chunks) >= 3
    for chunk in code_chunks:
        fences = fence_lines(chunk)
        assert fences[0] == "```rust" and fences[-1] == "```"
    # Cuts inside code happen at line ends: no code line is broken in two.
    original_lines = set(code.splitlines())
    for chunk in code_chunks:
        for line in chunk.splitlines():
            if "value_" in line:
                assert line in original_lines


def test_code_line_longer_than_a_message_is_cut_and_fenced() -> None:
    text = "```\n" + "y" * 5000 + "\n```"
    chunks = split_message(text)
    check_invariants(text, chunks)
    assert all(c.startswith("```") and c.endswith("```") for c in chunks)


def test_unterminated_code_block_keeps_every_character() -> None:
    text = "Start\n```js\n" + "\n".join(f"let v{i} = {i};" for i in range(400))
    chunks = split_message(text)
    check_invariants(text, chunks)
    assert all(len(c) <= DISCORD_LIMIT for c in chunks)


def test_inline_triple_backticks_are_not_fences() -> None:
    text = ("Use ```inline``` here. " * 200).strip()
    chunks = split_message(text)
    check_invariants(text, chunks)
    assert all("```inline```" in c for c in chunks[:-1])


def test_the_4500_character_reply_of_the_end_to_end_test() -> None:
    from tests.clients.discord.replies import long_reply

    text = long_reply()
    assert len(text) >= 4500
    chunks = split_message(text)
    assert 3 <= len(chunks) <= 4
    check_invariants(text, chunks)


@pytest.mark.parametrize("limit", [20, 100, 500, 2000])
@pytest.mark.parametrize("seed", range(40))
def test_random_documents_keep_the_invariants(seed: int, limit: int) -> None:
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.5:
            parts.append(paragraph(rng, rng.randint(1, 30)))
        elif kind < 0.8:
            parts.append(code_block(rng, rng.randint(1, 80), rng.choice(["", "py", "sh"])))
        elif kind < 0.9:
            parts.append("\n".join(f"- {words(rng, rng.randint(2, 12))}" for _ in range(10)))
        else:
            parts.append("z" * rng.randint(1, 3000))
    text = "\n\n".join(parts)
    check_invariants(text, split_message(text, limit), limit)


def test_limit_too_small_for_fences_is_refused() -> None:
    with pytest.raises(ValueError):
        split_message("text", limit=5)
