"""The PostgreSQL + pgvector backend (`PostgresBackend` in .backend): two HNSW indexes,
bulk loads and advisory locks. Chosen by `memory.backends` for postgresql URLs."""
