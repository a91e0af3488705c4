"""Token counting (offline-safe) and trimming a prompt to the context window."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from carrier_cli.llm import tokens
from carrier_cli.llm.base import ChatMessage
from carrier_cli.llm.tokens import (
    PromptSection,
    context_window,
    count_message_tokens,
    count_tokens,
    estimate_tokens,
    fit_to_budget,
    trim_messages,
)


@pytest.fixture(autouse=True)
def empty_tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    tokens._encoding.cache_clear()


def test_estimate_is_documented_and_errs_high() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a" * 35) == 10
    assert estimate_tokens("日本語") == 3
    sentence = "The quick brown fox jumps over the lazy dog."  # 10 tokens in cl100k/o200k
    assert 10 <= estimate_tokens(sentence) <= 14


def test_openai_models_without_cached_bpe_never_touch_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("count_tokens tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert not tokens.tiktoken_available("gpt-4o-mini")
    assert count_tokens("hello world, how are you?", "gpt-4o-mini") == estimate_tokens(
        "hello world, how are you?"
    )


def test_cached_bpe_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a (tiny, hand-made) encoding file in the cache, tiktoken is used for real."""
    import base64
    import hashlib

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    url = tokens._ENCODING_URLS["o200k_base"]
    ranks = [bytes([i]) for i in range(256)]
    body = "\n".join(f"{base64.b64encode(tok).decode()} {rank}" for rank, tok in enumerate(ranks))
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_text(body + "\n")

    import tiktoken
    import tiktoken.load

    def get_encoding(name: str) -> tiktoken.Encoding:
        # load_tiktoken_bpe reads the cache file above; with no cache it would download.
        return tiktoken.Encoding(
            name=name,
            pat_str=r"\S+|\s+",
            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(url),
            special_tokens={},
        )

    monkeypatch.setattr(tiktoken, "get_encoding", get_encoding)
    assert tokens.tiktoken_available("gpt-4o")
    assert count_tokens("abc", "gpt-4o") == 3  # byte-level ranks: one token per byte
    assert count_tokens("abc", "llama3") == estimate_tokens("abc")


def test_context_windows() -> None:
    assert context_window("openai", "gpt-4o-mini") == 128_000
    assert context_window("openai", "gpt-4-0613") == 8_192
    assert context_window("openrouter", "openai/gpt-4o") == 128_000
    assert context_window("anthropic", "claude-haiku-4-5") == 200_000
    assert context_window("ollama", "llama3.2") == 8192
    assert context_window("vllm", "some-new-model") == 8192


def test_message_tokens_include_overhead() -> None:
    messages = [ChatMessage("system", "a" * 35), ChatMessage("user", "b" * 35)]
    assert count_message_tokens(messages) == 3 + 2 * (4 + 10)


def history(n: int) -> PromptSection:
    return PromptSection(
        "history",
        [f"message {i} " + "x" * 30 for i in range(n)],
        drop_from="start",
        priority=2,
        keep=2,
    )


def memories(n: int) -> PromptSection:
    return PromptSection(
        "memories", [f"memory {i} " + "y" * 30 for i in range(n)], drop_from="end", priority=0
    )


def test_everything_fits_untouched() -> None:
    fitted = fit_to_budget("system", [history(3), memories(3)], "new", budget=10_000)
    assert fitted.fits
    assert fitted.dropped == {"history": 0, "memories": 0}
    assert len(fitted.section("history")) == 3


def test_least_relevant_memories_go_first_then_oldest_messages() -> None:
    system = "You are Eliza. " * 10
    new = "What did I say about Mars?"
    sections = [history(10), memories(10)]
    full = fit_to_budget(system, sections, new, budget=10_000).tokens
    item = count_tokens("memory 0 " + "y" * 30) + tokens.MESSAGE_OVERHEAD

    # Over by a little more than 11 items: all 10 memories go, then the 2 oldest messages.
    fitted = fit_to_budget(system, sections, new, budget=full - 11 * item - 1)
    assert fitted.fits
    assert fitted.system == system and fitted.new_message == new
    assert fitted.section("memories") == []
    assert fitted.section("history")[0].startswith("message 2 ")
    assert fitted.section("history")[-1].startswith("message 9 ")
    assert fitted.dropped == {"history": 2, "memories": 10}
    assert len(sections[0].items) == 10  # inputs are not modified

    few = fit_to_budget(system, sections, new, budget=full - 3 * item)
    assert [m.split()[1] for m in few.section("memories")] == [str(i) for i in range(7)]
    assert len(few.section("history")) == 10


def test_keep_floor_is_given_up_only_as_a_last_resort() -> None:
    system, new = "sys", "new"
    fixed = fit_to_budget(system, [], new, budget=10_000).tokens
    one = count_tokens("message 0 " + "x" * 30) + tokens.MESSAGE_OVERHEAD
    fitted = fit_to_budget(system, [history(6)], new, budget=fixed + 2 * one)
    assert [m.split()[1] for m in fitted.section("history")] == ["4", "5"]
    tighter = fit_to_budget(system, [history(6)], new, budget=fixed + one)
    assert [m.split()[1] for m in tighter.section("history")] == ["5"]


def test_system_and_new_message_are_never_dropped() -> None:
    system = "S" * 4000
    new = "N" * 4000
    fitted = fit_to_budget(system, [history(5), memories(5)], new, budget=100)
    assert not fitted.fits
    assert fitted.system == system and fitted.new_message == new
    assert fitted.section("history") == [] and fitted.section("memories") == []


def test_trim_messages_keeps_system_and_last_message() -> None:
    messages = [
        ChatMessage("system", "rules " * 50),
        *[
            ChatMessage("user" if i % 2 else "assistant", f"turn {i} " + "z" * 60)
            for i in range(10)
        ],
        ChatMessage("user", "the new message " * 20),
    ]
    untouched, dropped = trim_messages(messages, 100_000)
    assert untouched == messages and dropped == 0
    full = count_message_tokens(messages)
    one = 4 + count_tokens("turn 0 " + "z" * 60)
    kept, dropped = trim_messages(messages, full - 3 * one)
    assert dropped == 3
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert kept[1].content.startswith("turn 3 ")
    only_fixed, dropped = trim_messages(messages, 10)
    assert [m.role for m in only_fixed] == ["system", "user"]
    assert only_fixed[-1] == messages[-1] and dropped == 10
