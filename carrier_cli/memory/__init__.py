"""Long-term memory: storage, schema, vector search, embeddings and migrations."""
