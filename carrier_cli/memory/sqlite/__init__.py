"""The SQLite backend (`SqliteBackend` in .backend): a writer thread, inline reads, and an
in-process numpy vector index. Chosen by `memory.backends` for sqlite URLs and paths."""
