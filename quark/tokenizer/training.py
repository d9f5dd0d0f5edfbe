"""Train a named tokenizer from datasets in the home: `tokenizers/<name>/` with its provenance.

SentencePiece holds its training text in memory, so the corpus is *sampled* while it streams: each
document is kept with probability min(1, max_docs / rows, max_chars / text bytes), decided by a
seeded generator over rows, so a run is reproducible and a large corpus is never loaded whole.
Documents in the held-out split (see `corpus_text.in_holdout`; the same documents `quark tokenize
encode` puts in `val` at the same fraction) are never trained on; the compression reported is
measured on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import sentencepiece as spm

from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.home import Home, validate_name
from quark.tokenizer import Tokenizer, save_meta, train_tokenizer
from quark.tokenizer.corpus_text import Shard, dataset_shards, in_holdout, provenance

DEFAULT_MAX_CHARS = 200_000_000  # SentencePiece needs several bytes of RAM per training character
HOLDOUT_FRACTION = 0.01
HOLDOUT_MAX_CHARS = 2_000_000  # plenty for a stable chars/token figure


@dataclass
class _Sample:
    """What the streaming sampler saw: filled in while SentencePiece consumes the training texts."""

    documents: int = 0
    chars: int = 0
    read: int = 0
    held_out: list[str] = field(default_factory=list)
    held_out_chars: int = 0


def train_named_tokenizer(home: Home, name: str, datasets: Sequence[str], vocab_size: int, *,
                          max_docs: int | None = None, max_chars: int = DEFAULT_MAX_CHARS, seed: int = 0,
                          holdout: float = HOLDOUT_FRACTION, threads: int = 2,
                          on_read: Callable[[int, int], None] | None = None) -> dict:
    """Train `tokenizers/<name>/` (tokenizer.model, tokenizer.vocab, meta.json) atomically.

    `on_read(documents_read, total_rows)` is called as the corpus streams (for a progress bar).
    Returns the meta.json document.
    """
    validate_name(name, "tokenizer name")
    if vocab_size < 1:
        raise QuarkError(f"--vocab-size must be positive, got {vocab_size}")
    if max_docs is not None and max_docs < 1:
        raise QuarkError(f"--max-docs must be at least 1, got {max_docs}")
    shards = dataset_shards(home, datasets)
    started = time.time()
    sample = _Sample()
    texts = _sampled_texts(shards, sample, max_docs=max_docs, max_chars=max_chars, seed=seed, holdout=holdout,
                           on_read=on_read)
    with atomic_dir(home.tokenizer_dir(name)) as tmp:
        train_tokenizer(texts, tmp / "tokenizer", vocab_size, num_threads=threads)
        tok = Tokenizer.load(tmp / "tokenizer.model")
        meta = {
            "name": name,
            "datasets": provenance(shards, home.root),
            "training": {"documents": sample.documents, "chars": sample.chars, "documents_read": sample.read,
                         "max_docs": max_docs, "max_chars": max_chars, "seed": seed,
                         "seconds": round(time.time() - started, 2)},
            "held_out": _held_out_report(tok, sample, holdout),
            "sentencepiece": spm.__version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        save_meta(tmp, tok, meta)
    return {**tok.metadata(), **meta}


def _sampled_texts(shards: Sequence[Shard], sample: _Sample, *, max_docs: int | None, max_chars: int, seed: int,
                   holdout: float, on_read: Callable[[int, int], None] | None) -> Iterator[str]:
    rows = sum(s.rows for s in shards)
    rate = min(1.0, max_chars / max(1, sum(s.text_bytes for s in shards)))
    if max_docs:
        rate = min(rate, max_docs / max(1, rows))
    rate = min(1.0, rate * 1.05)  # over-sample a little so the caps, not bad luck, decide where it stops
    if on_read:
        on_read(0, rows)
    for sample.read, (text, kept) in enumerate(_rows(shards, rate, seed), 1):
        if on_read and sample.read % 1000 == 0:
            on_read(sample.read, rows)
        if in_holdout(text, holdout):
            if sample.held_out_chars < HOLDOUT_MAX_CHARS:
                sample.held_out.append(text)
                sample.held_out_chars += len(text)
        elif kept and text:
            sample.documents += 1
            sample.chars += len(text)
            yield text
            if (max_docs and sample.documents >= max_docs) or sample.chars >= max_chars:
                break
    if on_read:
        on_read(rows, rows)


def _rows(shards: Sequence[Shard], rate: float, seed: int) -> Iterator[tuple[str, bool]]:
    """Every text of the shards with a seeded keep-or-skip draw (one generator, drawn shard by shard)."""
    rng = np.random.default_rng(seed)
    for shard in shards:
        yield from zip(shard.texts(), rng.random(shard.rows) < rate)


def _held_out_report(tok: Tokenizer, sample: _Sample, fraction: float) -> dict:
    """Compression and byte-exact round trip on documents the tokenizer never saw."""
    report: dict = {"fraction": fraction, "documents": len(sample.held_out), "chars": sample.held_out_chars}
    if not sample.held_out:
        return {**report, "tokens": 0, "chars_per_token": None, "roundtrip": None}
    ids = tok.encode_batch(sample.held_out)
    tokens = sum(map(len, ids))
    roundtrip = all(tok.decode(seq) == text for seq, text in zip(ids, sample.held_out))
    return {**report, "tokens": tokens, "chars_per_token": round(sample.held_out_chars / max(1, tokens), 4),
            "roundtrip": roundtrip}
