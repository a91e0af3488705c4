"""The cyclic garbage collector held back while a `carrier` process starts.

Starting a command creates ~200,000 long-lived objects (modules, classes, functions, the
pydantic and SQLAlchemy machinery) and hardly any garbage, yet the collector's default
thresholds (700, 10, 10) run it hundreds of times over them, each full pass walking
everything created so far: importing openai + SQLAlchemy + numpy + pydantic-settings took
912 ms CPU with the defaults and 769 ms with the first threshold at 1,000,000 (-16%, same
machine and load; disabling it outright gave 763 ms).

`pause()` (the `carrier` entry point only, never a library caller or a test) raises that
threshold, so memory stays bounded even if nothing resumes: a collection still runs every
million net allocations. `resume()`, called where a long-lived command has finished
starting (chat after its first reply, `run`/`serve` once serving), collects once, freezes
what is left (gc.freeze: those objects live as long as the process and are never walked
again, which also shortens every later full collection) and restores the thresholds. The
one collection is what start-up skipped: without it the start-up's cyclic garbage (1,755
objects after importing the runtime, openai, SQLAlchemy and numpy) would be frozen with
the rest and never freed. It costs ~75 ms over ~197,000 objects, once, after start-up's
figure (chat's first reply is already out). Both are idempotent; `resume()` without
`pause()` does nothing.
"""

from __future__ import annotations

import gc

START_THRESHOLD = 1_000_000

_paused: tuple[int, int, int] | None = None


def pause() -> None:
    global _paused
    if _paused is None:
        _paused = gc.get_threshold()
        gc.set_threshold(START_THRESHOLD, _paused[1], _paused[2])


def resume() -> None:
    global _paused
    if _paused is not None:
        gc.collect()
        # gc.freeze(), telling a bulk load under way not to unfreeze it (memory.heap).
        from carrier_cli.memory.heap import freeze_for_good

        freeze_for_good()
        gc.set_threshold(*_paused)
        _paused = None


def paused() -> bool:
    return _paused is not None
