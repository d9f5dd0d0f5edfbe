"""The tokenizer pipeline: the SentencePiece model and its training, the chat/tool-call template,
corpus streaming, encoding into packed token shards, and the round-trip check.

The model and the template are re-exported here (`from quark.tokenizer import Tokenizer`); the
heavier stages are imported by their own module paths (quark.tokenizer.encode, .training, ...).
"""

from quark.tokenizer.chat_template import CHAT_SPECIALS, ROLES, tool_call_text
from quark.tokenizer.sentencepiece_model import BOS, EOS, PAD, UNK, Tokenizer, save_meta, train_tokenizer

__all__ = ["BOS", "CHAT_SPECIALS", "EOS", "PAD", "ROLES", "UNK", "Tokenizer", "save_meta", "tool_call_text",
           "train_tokenizer"]
