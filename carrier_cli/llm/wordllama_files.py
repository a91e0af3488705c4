"""The bundled wordllama model read straight from its two files, without importing wordllama.

A new chat message needs the local model before its memory search, and loading it the
documented way (`import wordllama` and `WordLlama.load`) cost ~355 ms of CPU before the
first reply, measured with `-X importtime` and perf_counter on this 2-core machine:
`import wordllama` ~225 ms (it imports pydantic, requests and urllib3, its trainer and
model configs, none of which inference uses) and `WordLlama.load` ~130 ms. What inference
holds (wordllama 0.4, `WordLlamaInference.__init__`) is two things, which this module
builds the same way from the same files:

- the token table: the safetensors file's `embedding.weight` (32000 x 256, float16 on
  disk), which wordllama holds as float32; kept here as the file's float16, mapped
  from the file (`read_table`: 32.8 MB of the bot's resident memory from the start
  before, now only the pages of the rows its texts have used), since Carrier's pooling
  (`_embed_fast`) converts each gathered row to float32 before adding it, and float16
  -> float32 is exact: the same float32 sums as from wordllama's float32 table, bit
  for bit;
- the tokenizer: `Tokenizer.from_file` on the bundled config, then `enable_padding()` and
  `no_truncation()`.

The safetensors layout is read here (an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte offsets, then the data), so neither
`safetensors` nor wordllama is imported. Anything unexpected (another wordllama layout, a
dtype or shape this does not know, a tokenizers release without `encode_batch_fast`)
returns None, and the caller loads through wordllama as before.
tests/llm/test_wordllama_files.py and test_local_embeddings.py check the table, the
token ids and the vectors against `WordLlama.load` bit for bit.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

WEIGHTS = ("weights", "l2_supercat_256.safetensors")
TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
TENSOR = "embedding.weight"
SHAPE = (32000, 256)  # l2_supercat's vocabulary x the 256-d matryoshka slice
_DTYPES = {"F16": "<f2", "F32": "<f4"}
MAX_HEADER = 1 << 20  # a header this large is not the bundled file's (88 bytes)


@dataclass(eq=False)
class BundledModel:
    """What Carrier's pooling (llm/embeddings.py `_embed_fast`) reads of a loaded wordllama
    model: the token table (the file's float16: see the module docstring) and the padded
    tokenizer; `binary` as wordllama's."""

    embedding: Any
    tokenizer: Any
    tokenizer_path: Path
    binary: bool = False

    def unpadded_tokenizer(self) -> Any:
        """The same tokenizer without padding, read from its file again: ~80 ms, where a
        copy through `to_str`/`from_str` took ~250 ms."""
        return read_tokenizer(self.tokenizer_path, padded=False)


def read_tokenizer(path: Path, *, padded: bool) -> Any:
    """The tokenizer file with wordllama's inference settings (`padded`: padding on, as
    `WordLlamaInference` sets it) or without padding; never truncated."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    if padded:
        tokenizer.enable_padding()
    else:
        tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def package_dir() -> Path | None:
    """wordllama's installed directory, found without running its `__init__`."""
    spec = find_spec("wordllama")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    return Path(locations[0]) if locations else None


def read_table(path: Path) -> Any:
    """`embedding.weight` of a safetensors file as a contiguous, read-only array of the
    file's own dtype, float16 or float32, over the file mapped into memory (None if the
    file is not laid out as expected). Not converted to float32: the pooling converts
    the rows it gathers (exactly)."""
    import numpy as np

    with path.open("rb") as file:
        head = file.read(8)
        if len(head) != 8:
            return None
        (size,) = struct.unpack("<Q", head)
        if size > MAX_HEADER:
            return None
        header = json.loads(file.read(size))
        entry = header.get(TENSOR)
        if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
            return None
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        shape = tuple(entry.get("shape") or ())
        start, end = entry.get("data_offsets") or (0, -1)
        if shape != SHAPE or end - start != dtype.itemsize * SHAPE[0] * SHAPE[1]:
            return None
        if os.fstat(file.fileno()).st_size < 8 + size + end:
            return None  # truncated
        # Mapped, not read: only the pages of rows a text has used are resident (a
        # read copy was all 16.4 MB of it from the start, in the bot's idle RSS), and
        # clean file pages are shared with other processes and reclaimable.
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    count = SHAPE[0] * SHAPE[1]
    return np.frombuffer(mapped, dtype=dtype, count=count, offset=8 + size + start).reshape(shape)


def load_bundled() -> BundledModel | None:
    """The bundled model as wordllama's inference holds it, or None (see the module
    docstring: the caller then loads through wordllama)."""
    root = package_dir()
    if root is None:
        return None
    weights, tokenizer_path = root.joinpath(*WEIGHTS), root.joinpath(*TOKENIZER)
    if not (weights.is_file() and tokenizer_path.is_file()):
        return None
    table = read_table(weights)  # first: ~1 ms to refuse, where the tokenizer takes ~100
    if table is None:
        return None
    tokenizer = read_tokenizer(tokenizer_path, padded=True)
    if not (hasattr(tokenizer, "encode_batch_fast") and hasattr(tokenizer, "to_str")):
        return None
    return BundledModel(embedding=table, tokenizer=tokenizer, tokenizer_path=tokenizer_path)
