"""The one interface memory uses to turn text into vectors.

Today the vectors are a Quark model's mean-pooled hidden states (`quark.retrieval.embedding.embed_texts`);
a trained embedding head replaces them by being another `Embedder`. The name identifies the vector
space: memories embedded by one embedder are never compared with queries from another, even when
the dimensions agree (see quark.memory.store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from quark.models.llm import LLM
from quark.retrieval.embedding import embed_texts
from quark.tokenizer import Tokenizer


class Embedder(Protocol):
    """Unit-norm float32 vectors of a fixed dimension, from a named vector space."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit L2 norm."""
        ...


class ModelEmbedder:
    """Mean-pooled final hidden states of a Quark LLM (the model the chat is running)."""

    def __init__(self, model: LLM, tokenizer: Tokenizer, name: str) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.dim = model.config.n_embd

    @classmethod
    def for_model_folder(cls, model: LLM, tokenizer: Tokenizer, folder: Path) -> ModelEmbedder:
        return cls(model, tokenizer, f"hidden-mean:{Path(folder).name}:{weights_fingerprint(folder)}")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return embed_texts(self.model, self.tokenizer, list(texts))


def weights_fingerprint(folder: Path) -> str:
    """A short hash of a model's weights file (size and last 64 KiB): retraining a model under the
    same name gives a new vector space, so its old embeddings must not be searched with new queries."""
    path = Path(folder) / "model.safetensors"
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    return hashlib.sha1(str(size).encode() + tail).hexdigest()[:10]
