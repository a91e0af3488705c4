"""A Reel, video story or carousel video made ready for upload: as it is, or converted.

An in-spec file is uploaded as it is: the result points at the original, byte for
byte (nothing is rewritten "to be safe": a re-encode always loses quality). An
out-of-spec one is converted (transcode.convert) into Carrier's cache, under a name
derived from the original's content and the rules it was converted for, so a rerun or a
resume after a crash finds the same file instead of converting it again; the output is
probed again and must pass. `transcode=False` (`--no-transcode`) refuses instead, listing
every problem. Problems no conversion can fix (too short, too long, no video track)
are refused either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from carrier_cli.clients.instagram import video_probe
from carrier_cli.clients.instagram.hashing import file_sha256
from carrier_cli.clients.instagram.video_probe import VideoSpec
from carrier_cli.errors import InputError

_VERSION = "1"  # bump when the conversion changes, so cached outputs are redone


class TranscodeReporter(Protocol):
    """Where the conversion's progress goes (the CLI: a Rich progress bar)."""

    def transcode_progress(self, name: str, seconds: float) -> Callable[[float], None] | None: ...

    def transcode_done(self) -> None: ...


@dataclass
class PreparedVideo:
    path: Path  # the original when it is in spec, else the converted copy
    sha256: str  # of `path`
    size: int
    width: int
    height: int
    duration: float
    notes: list[str] = field(default_factory=list)
    source_hash: str | None = None  # of the original, when `path` is a converted copy


def prepare_video(
    path: Path,
    spec: VideoSpec,
    *,
    out_dir: Path,
    transcode: bool = True,
    reporter: TranscodeReporter | None = None,
) -> PreparedVideo:
    facts = video_probe.probe(path)
    found = video_probe.problems(facts, spec)
    if not found:
        return PreparedVideo(
            path, file_sha256(path), facts.size, facts.width, facts.height, facts.duration
        )
    listed = "; ".join(p.text for p in found)
    if any(p.fix == "none" for p in found):
        raise InputError(
            f"{path}: {listed}.",
            hint="No conversion can fix this: use another clip (Reels last 3 s to 15 min, "
            "video stories 3 to 60 s).",
        )
    if not transcode:
        raise InputError(
            f"{path}: {listed}.",
            hint="Run without --no-transcode to let Carrier convert it to an MP4 that "
            "Instagram accepts (H.264 + AAC, fast start); the original is never changed.",
        )
    source_hash = file_sha256(path)
    key = hashlib.sha256(
        f"{source_hash}:{spec.label}:{spec.max_bytes}:{_VERSION}".encode()
    ).hexdigest()
    target = out_dir / f"{key[:32]}.mp4"
    if not target.is_file():
        from carrier_cli.clients.instagram import transcode as transcode_mod

        progress = reporter.transcode_progress(path.name, facts.duration) if reporter else None
        try:
            transcode_mod.convert(facts, found, spec, target, progress=progress)
        finally:
            if reporter is not None:
                reporter.transcode_done()
    result = video_probe.probe(target)
    still = video_probe.problems(result, spec)
    if still:
        target.unlink(missing_ok=True)
        raise InputError(
            f"{path}: the converted video still breaks Instagram's rules: "
            + "; ".join(p.text for p in still)
            + ".",
            hint="Export it again as MP4 (H.264 + AAC, 30 fps, at most 1920 px wide).",
        )
    how = "remuxed" if {p.fix for p in found} == {"remux"} else "transcoded"
    return PreparedVideo(
        target,
        file_sha256(target),
        result.size,
        result.width,
        result.height,
        result.duration,
        notes=[f"{how}: {listed}"],
        source_hash=source_hash,
    )
