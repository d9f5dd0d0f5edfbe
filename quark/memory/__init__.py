"""Chat memory: long-term memories (facts and chunks, hybrid search), the extractive summary that
older turns fold into, and the preference profile. Embedders are quark.retrieval.embedder."""

from quark.memory.extract import NewMemory, chunk_message, extract_facts
from quark.memory.profile import describe, update_profile
from quark.memory.store import Hit, Memory, MemoryStore, parse_ref
from quark.memory.summary import summary_line, summary_lines

__all__ = ["Hit", "Memory", "MemoryStore", "NewMemory", "chunk_message", "describe", "extract_facts", "parse_ref",
           "summary_line", "summary_lines", "update_profile"]
