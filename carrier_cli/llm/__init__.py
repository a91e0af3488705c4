"""Model and embedding providers."""
