"""Scripted model replies shared by the splitter unit tests and the end-to-end tests."""

from __future__ import annotations


def long_reply() -> str:
    """About 4,600 characters: prose, a code block too long for one message, more prose."""
    intro = " ".join(
        f"Sentence number {i} explains one more detail of the memory layer." for i in range(13)
    )
    code_lines = [f"    total += weight_{i} * score(item_{i})  # step {i}" for i in range(52)]
    code = "```python\ndef rank(items):\n    total = 0\n" + "\n".join(code_lines) + "\n```"
    outro = "\n\n".join(
        " ".join(f"Closing thought {p}.{i} keeps going for a while." for i in range(8))
        for p in range(3)
    )
    return f"{intro}\n\n{code}\n\n{outro}"
