"""Retrieval: Quark's own embedding model (a contrastive head), the reranker, the document index
with code-aware chunking, and grounded answers that cite numbered sources."""
