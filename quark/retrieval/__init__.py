"""Retrieval: text embeddings (pooled states or Quark's own contrastive head), hybrid (BM25 +
vector) search over SQLite tables shared by memory and the document index, the reranker, the
document index with code-aware chunking, and grounded answers that cite numbered sources."""
