"""Retrieval: text embeddings, and hybrid (BM25 + vector) search over SQLite tables."""
