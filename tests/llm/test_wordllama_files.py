"""llm/wordllama_files.py: the bundled model read from wordllama's files without importing
wordllama, identical to what `WordLlama.load` builds, and anything unexpected left to
wordllama's own loader."""

from __future__ import annotations

import json
import mmap
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from carrier_cli.llm import embeddings, wordllama_files
from tests.llm.test_local_embeddings import _varied_texts, wordllamas_own


def test_the_table_and_the_tokenizer_are_wordllamas_own() -> None:
    bundled = wordllama_files.load_bundled()
    assert bundled is not None, "the bundled files were not read: the fallback would hide it"
    theirs = wordllamas_own()
    # The file's float16, half of wordllama's float32 table in memory (16.4 MB of the
    # Discord bot's idle RSS); converted, every value is wordllama's, bit for bit.
    assert bundled.embedding.dtype == np.float16 and bundled.embedding.flags.c_contiguous
    assert bundled.embedding.nbytes * 2 == theirs.embedding.nbytes
    base = bundled.embedding  # over the mapped file, not a copy read into memory
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    assert theirs.embedding.dtype == np.float32
    assert np.array_equal(
        bundled.embedding.astype(np.float32).view(np.uint32), theirs.embedding.view(np.uint32)
    )
    assert bundled.tokenizer.padding == theirs.tokenizer.padding
    assert bundled.tokenizer.truncation == theirs.tokenizer.truncation is None
    texts = _varied_texts()[::10]
    ours = [e.ids for e in bundled.tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert ours == [e.ids for e in theirs.tokenize(texts)]
    unpadded = bundled.unpadded_tokenizer()  # ingest's large batches: the padding left off
    assert unpadded.padding is None and unpadded.truncation is None
    assert [e.ids for e in unpadded.encode_batch(texts, add_special_tokens=False)] == [
        e.ids[: sum(e.attention_mask)] for e in theirs.tokenize(texts)
    ]


def test_embedding_with_the_local_model_imports_no_wordllama() -> None:
    """`import wordllama` cost ~225 ms of CPU before a new chat message's first reply."""
    code = (
        "import sys\n"
        "from carrier_cli.llm.embeddings import LocalEmbedder\n"
        "vector = LocalEmbedder().embed_sync(['where does the train leave'])\n"
        "print(vector.shape, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('wordllama', 'safetensors', 'pydantic', 'requests')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "(1, 256) []", done.stdout + done.stderr


def _safetensors(path: Path, header: object, data: bytes) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


ROWS, COLS = wordllama_files.SHAPE


def _header(
    tensor: str = "embedding.weight", dtype: str = "F16", cols: int = COLS
) -> dict[str, object]:
    size = ROWS * cols * 2
    return {tensor: {"dtype": dtype, "shape": [ROWS, cols], "data_offsets": [0, size]}}


@pytest.mark.parametrize(
    ("header", "data"),
    [
        (_header(dtype="BF16"), b""),
        (_header(cols=128), b""),
        (_header(tensor="other.weight"), b""),
        (_header(), b"\0" * 100),
    ],
    ids=["unknown dtype", "another shape", "another tensor", "truncated data"],
)
def test_a_weights_file_laid_out_otherwise_is_not_read(
    tmp_path: Path, header: object, data: bytes
) -> None:
    assert (
        wordllama_files.read_table(_safetensors(tmp_path / "w.safetensors", header, data)) is None
    )


def test_a_header_too_long_to_be_the_bundled_files_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert wordllama_files.read_table(path) is None
    path.write_bytes(b"\1\2")
    assert wordllama_files.read_table(path) is None


def test_a_damaged_bundle_falls_back_to_wordllamas_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header that is not JSON raises inside the direct read; the model then loads
    through wordllama, with the same vectors."""
    real = wordllama_files.package_dir()
    assert real is not None
    (tmp_path / "weights").mkdir()
    (tmp_path / "tokenizers").mkdir()
    _safetensors(tmp_path.joinpath(*wordllama_files.WEIGHTS), b"not json", b"")
    tokenizer = tmp_path.joinpath(*wordllama_files.TOKENIZER)
    tokenizer.write_bytes(real.joinpath(*wordllama_files.TOKENIZER).read_bytes())
    monkeypatch.setattr(wordllama_files, "package_dir", lambda: tmp_path)
    monkeypatch.setattr(embeddings, "_model", None)
    monkeypatch.setattr(embeddings, "_unpadded", {})
    model = embeddings.load_wordllama()
    assert type(model).__name__ == "WordLlamaInference"
    vector = embeddings.LocalEmbedder().embed_sync(["a lantern in the harbor"])
    assert np.array_equal(vector, wordllamas_own().embed(["a lantern in the harbor"], norm=False))
