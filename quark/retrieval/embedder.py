"""The one interface memory uses to turn text into vectors.

The vectors are a Quark model's mean-pooled hidden states, or, when the model folder has a trained
contrastive head (`quark finetune embed`), the head's embeddings (`quark.retrieval.embedding.embed_texts`).
The name identifies the vector space: memories embedded by one embedder are never compared with
queries from another, even when the dimensions agree (see quark.memory.store), and a new name
makes the chat session backfill vectors for every memory (into the vec0 table of the new width).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from quark.models.embedding_head import EmbeddingHead
from quark.models.llm import LLM
from quark.retrieval.embedding import HEAD_FILE, embed_texts, load_head, output_dim
from quark.tokenizer import Tokenizer


class Embedder(Protocol):
    """Unit-norm float32 vectors of a fixed dimension, from a named vector space."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit L2 norm."""
        ...


class ModelEmbedder:
    """A Quark LLM's embeddings: its contrastive head's when it has one, else mean-pooled states."""

    def __init__(self, model: LLM, tokenizer: Tokenizer, name: str, head: EmbeddingHead | None = None) -> None:
        self.model, self.tokenizer, self.name, self.head = model, tokenizer, name, head
        self.dim = output_dim(model, head)

    @classmethod
    def for_model_folder(cls, model: LLM, tokenizer: Tokenizer, folder: Path) -> ModelEmbedder:
        """The embedder of a loaded model folder; its name changes whenever the weights or the
        head do, so memories are re-embedded after `quark finetune embed` replaces a model."""
        head = load_head(folder, model.config.n_embd, device=model.embed_tokens.weight.device)
        return cls(model, tokenizer, embedder_name(folder), head)

    @classmethod
    def load(cls, folder: Path) -> ModelEmbedder:
        """Load a model folder just to embed with it (the document index's embedding model)."""
        from quark.modelfolder import load_model, load_tokenizer

        return cls.for_model_folder(load_model(folder), load_tokenizer(folder), folder)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return embed_texts(self.model, self.tokenizer, list(texts), head=self.head)


def embedder_name(folder: Path) -> str:
    """The vector space a model folder embeds into, known without loading it: the head's width
    and both weight files' fingerprints when it has a head, else the pooled states'."""
    folder = Path(folder)
    if not (folder / HEAD_FILE).is_file():
        return f"hidden-mean:{folder.name}:{weights_fingerprint(folder)}"
    return f"head:{folder.name}:{weights_fingerprint(folder)}{weights_fingerprint(folder, HEAD_FILE)}"


def weights_fingerprint(folder: Path, file: str = "model.safetensors") -> str:
    """A short hash of a model's weights file (size and last 64 KiB): retraining a model under the
    same name gives a new vector space, so its old embeddings must not be searched with new queries."""
    path = Path(folder) / file
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    return hashlib.sha1(str(size).encode() + tail).hexdigest()[:10]
