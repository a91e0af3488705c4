"""The bytes of the files turns answered with, kept on disk for a while so an API client
can download them (`GET /v1/agents/{agent}/files/{id}`).

Memory keeps a file's description, never its bytes (a 10 MiB image per turn would make
the database the size of the media). This store is the only place the bytes stay:

- under `<data dir>/api-files/`, content-addressed: `<id>.bin` holds the bytes and
  `<id>.json` the descriptor (filename, type, size, description, expiry), where the id is
  sha256 over name, type and bytes (`OutgoingFile.file_id`), so the same file sent twice is
  stored once and every process names it alike;
- written atomically (a temporary file in the same directory, then `os.replace`), so
  several `carrier serve` processes sharing the data dir never see half a file;
- bounded in time: a file is kept `api_file_retention_hours` (24 by default) after the
  last turn that sent it; after that its bytes are deleted and its descriptor stays one
  more retention period as a tombstone, so a late download gets 410 `file_expired` (not a
  puzzling 404);
- bounded in size: past `api_file_max_total_mb` (1024 by default) the files expiring first
  lose their bytes (410 too). A turn sends at most 10 files of 10 MiB (outgoing.py), so the
  default holds the last ~10 fullest turns at worst, thousands of typical ones.

Sweeps run on a write, once a minute per process or after a tenth of the cap was written
(so the cap is exceeded by at most that tenth); they only delete, so racing
processes can at worst both try to delete one file (FileNotFoundError is ignored). Disk
work runs in a thread: writing 100 MiB must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carrier_cli.runtime.outgoing import OutgoingFile

log = logging.getLogger("carrier.api.files")

SWEEP_EVERY = 60.0  # seconds between sweeps of one process
# A file kept again within this many seconds by the same process is not rewritten: its
# expiry moves by at most that much of a retention of hours. Bounded to RECENT_MAX ids.
RECENTLY = 60.0
RECENT_MAX = 1024
FILE_ID = re.compile(r"^[0-9a-f]{64}$")


class FileGone(Exception):
    """The file was stored but its bytes are gone (expired, or evicted by the size cap)."""


@dataclass(frozen=True)
class StoredFile:
    path: Path
    filename: str
    content_type: str | None
    size: int


class FileStore:
    def __init__(self, root: Path, *, retention_seconds: float, max_total_bytes: int) -> None:
        self.root = root
        self.retention = retention_seconds
        self.max_total_bytes = max_total_bytes
        self._last_sweep = 0.0
        self._written = 0  # bytes written since the last sweep
        # file id -> when this process last kept it. On one server a turn's files reach
        # keep() twice (the runtime's file sink before reply.completed, then the answer
        # path, which exists for `--role api` fronts); the second within RECENTLY is a
        # no-op instead of a descriptor rewrite (mkstemp, write, replace).
        self._recent: dict[str, float] = {}
        self._recently = min(RECENTLY, retention_seconds / 10)  # never past its expiry

    @classmethod
    def from_settings(cls, settings: Any) -> FileStore:
        from carrier_cli.paths import carrier_paths

        return cls(
            carrier_paths().data_dir / "api-files",
            retention_seconds=settings.api_file_retention_hours * 3600,
            max_total_bytes=settings.api_file_max_total_mb * 1024 * 1024,
        )

    # ------------------------------------------------------------------- write --
    async def keep(self, files: Sequence[OutgoingFile]) -> None:
        """Store the files' bytes (or extend their retention). A disk failure is logged,
        not raised: the reply stands, and the download answers 404/410."""
        if files:
            await asyncio.to_thread(self.keep_now, list(files))

    def keep_now(self, files: Sequence[OutgoingFile]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            now = time.time()
            for file in files:
                if self._write(file, now):
                    self._written += len(file.data)
            # Once a minute, or sooner when a tenth of the cap was written since the last
            # sweep: the cap is exceeded by at most that much (100 MiB of the default 1 GiB).
            if now - self._last_sweep >= SWEEP_EVERY or self._written > self.max_total_bytes / 10:
                self._last_sweep, self._written = now, 0
                self.sweep(now)
        except OSError as exc:
            log.warning("could not keep a reply's files under %s: %s", self.root, exc)

    def _write(self, file: OutgoingFile, now: float) -> bool:
        """Store one file; False when this process kept it moments ago and it is there."""
        blob = self.root / f"{file.file_id}.bin"
        kept = self._recent.get(file.file_id)
        if kept is not None and now - kept < self._recently and blob.exists():
            return False
        if blob.exists():
            os.utime(blob)  # a sweep racing this write keeps it (it checks the mtime too)
        else:
            self._atomic(blob, file.data)
        meta = {
            "filename": file.filename,
            "content_type": file.content_type,
            "size": len(file.data),
            "description": file.description,
            "expires": now + self.retention,
        }
        self._atomic(self.root / f"{file.file_id}.json", json.dumps(meta).encode("utf-8"))
        self._recent.pop(file.file_id, None)
        self._recent[file.file_id] = now
        while len(self._recent) > RECENT_MAX:  # oldest first (insertion order)
            del self._recent[next(iter(self._recent))]
        return True

    def _atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -------------------------------------------------------------------- read --
    def find(self, file_id: str) -> StoredFile | None:
        """The stored file; None when no turn stored it (404); FileGone when its bytes
        expired (410)."""
        if not FILE_ID.match(file_id):
            return None
        try:
            meta = json.loads((self.root / f"{file_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        blob = self.root / f"{file_id}.bin"
        if float(meta.get("expires", 0)) < time.time() or not blob.exists():
            raise FileGone(file_id)
        return StoredFile(
            blob, str(meta.get("filename") or "file"), meta.get("content_type"), int(meta["size"])
        )

    def has(self, file_id: str) -> bool:
        return (self.root / f"{file_id}.bin").exists()

    # ------------------------------------------------------------------- sweep --
    def sweep(self, now: float | None = None) -> None:
        """Delete expired bytes, old tombstones, and bytes past the size cap."""
        now = time.time() if now is None else now
        live: list[tuple[float, Path, int]] = []  # (expires, blob, size)
        for meta_path in self.root.glob("*.json"):
            try:
                expires = float(json.loads(meta_path.read_text(encoding="utf-8"))["expires"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            blob = meta_path.with_suffix(".bin")
            try:
                stat = blob.stat()
            except FileNotFoundError:
                stat = None
            if expires < now and (stat is None or stat.st_mtime + self.retention < now):
                _unlink(blob)
                if expires + self.retention < now:
                    _unlink(meta_path)  # the tombstone's turn is over too
            elif stat is not None:
                live.append((expires, blob, stat.st_size))
        total = sum(size for _, _, size in live)
        for _, blob, size in sorted(live, key=lambda item: item[0]):
            if total <= self.max_total_bytes:
                break
            _unlink(blob)
            total -= size
        for tmp in self.root.glob(".tmp-*"):  # a process killed mid-write
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime + 3600 < now:
                    tmp.unlink()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
