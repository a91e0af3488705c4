"""The API's store of reply files (clients/api/file_store.py) on a real directory: exact
bytes, atomic writes, retention with a 410 tombstone, the size cap, and two processes'
stores sharing one data dir."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from carrier_cli.clients.api.file_store import FileGone, FileStore
from carrier_cli.runtime.outgoing import OutgoingFile

MiB = 1024 * 1024


def store(root: Path, retention: float = 3600, cap: int = 100 * MiB) -> FileStore:
    return FileStore(root, retention_seconds=retention, max_total_bytes=cap)


def test_kept_bytes_come_back_exactly_and_no_temporary_file_stays(tmp_path: Path) -> None:
    files = store(tmp_path)
    file = OutgoingFile("a.bin", bytes(range(256)) * 100, "application/x-test", "alt")
    files.keep_now([file, file])  # the same file twice: stored once
    found = files.find(file.file_id)
    assert found is not None
    assert found.path.read_bytes() == file.data
    assert (found.filename, found.content_type, found.size) == (
        "a.bin",
        "application/x-test",
        25600,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{file.file_id}.bin",
        f"{file.file_id}.json",
    ]
    assert files.find("0" * 64) is None and files.find("../etc/passwd") is None


def test_a_file_kept_again_at_once_is_not_rewritten_but_later_its_expiry_moves(
    tmp_path: Path,
) -> None:
    # One server keeps a turn's files twice (the runtime's sink, then the answer path).
    files = store(tmp_path, retention=5.0)  # a tenth: 0.5 s, room for a busy machine
    file = OutgoingFile("a.txt", b"hello")
    files.keep_now([file])
    descriptor = tmp_path / f"{file.file_id}.json"
    first = descriptor.stat().st_mtime_ns
    time.sleep(0.02)
    files.keep_now([file])
    assert descriptor.stat().st_mtime_ns == first
    time.sleep(0.6)  # past a tenth of the retention: the expiry is extended again
    files.keep_now([file])
    assert descriptor.stat().st_mtime_ns > first
    # and a store in another process (no memory of this one's writes) rewrites it
    extended = descriptor.stat().st_mtime_ns
    time.sleep(0.02)
    store(tmp_path, retention=5.0).keep_now([file])
    assert descriptor.stat().st_mtime_ns > extended


def test_an_expired_file_is_gone_then_forgotten(tmp_path: Path) -> None:
    files = store(tmp_path, retention=0.2)
    file = OutgoingFile("a.txt", b"hello")
    files.keep_now([file])
    time.sleep(0.3)
    with pytest.raises(FileGone):  # expired: 410, even before a sweep deleted the bytes
        files.find(file.file_id)
    files.sweep()
    assert not (tmp_path / f"{file.file_id}.bin").exists()
    with pytest.raises(FileGone):  # the descriptor stays one more retention as a tombstone
        files.find(file.file_id)
    files.sweep(time.time() + 1)
    assert files.find(file.file_id) is None  # then: unknown (404)


def test_past_the_size_cap_the_files_expiring_first_lose_their_bytes(tmp_path: Path) -> None:
    files = store(tmp_path, cap=25 * MiB)
    old, mid, new = (OutgoingFile(f"{n}.bin", bytes([n]) * 10 * MiB) for n in (1, 2, 3))
    for file in (old, mid, new):
        files.keep_now([file])
        time.sleep(0.01)
    files.sweep()
    with pytest.raises(FileGone):
        files.find(old.file_id)
    assert files.find(mid.file_id) is not None and files.find(new.file_id) is not None


def test_two_processes_stores_share_one_directory(tmp_path: Path) -> None:
    """Each `carrier serve` has its own FileStore over the same data dir."""
    one, two = store(tmp_path), store(tmp_path)
    file = OutgoingFile("shared.txt", b"from one")
    one.keep_now([file])
    found = two.find(file.file_id)
    assert found is not None and found.path.read_bytes() == b"from one"
    two.keep_now([file])  # sent again by a turn on the other: kept, retention extended
    two.sweep()
    assert one.find(file.file_id) is not None


def test_a_disk_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    files = store(blocker / "api-files")
    files.keep_now([OutgoingFile("a.txt", b"a")])
    assert "could not keep a reply's files" in caplog.text
