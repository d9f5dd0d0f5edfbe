"""Chat memory: long-term memories (facts and chunks, hybrid search), the extractive summary that
older turns fold into, the preference profile, and the embedder interface."""

from quark.memory.embedder import Embedder, ModelEmbedder
from quark.memory.extract import NewMemory, chunk_message, extract_facts
from quark.memory.profile import describe, update_profile
from quark.memory.store import Hit, Memory, MemoryStore, parse_ref
from quark.memory.summary import summary_line, summary_lines

__all__ = ["Embedder", "Hit", "Memory", "MemoryStore", "ModelEmbedder", "NewMemory", "chunk_message", "describe",
           "extract_facts", "parse_ref", "summary_line", "summary_lines", "update_profile"]
