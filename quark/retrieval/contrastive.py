"""`quark finetune embed`: Quark's own embedding model, a contrastive head on a Quark base.

The network is the base LLM (every weight trains) with models/embedding_head.py on top: mean-pooled
final hidden states → projection → unit vectors. The loss is InfoNCE, both ways: each query against
every positive of the batch (in-batch negatives) plus each pair's BM25-mined hard negatives, and
each positive against every query; logits are cosines times the head's 1/temperature (learned, or
fixed by `embed.learn_temperature: false`). Two rows holding the same text are never each other's
negatives. It runs through the one Trainer like every alignment kind (quark.align.run), so
checkpoints, --resume, torchrun and the progress bar are the usual ones.

Each evaluation embeds the held-out queries and held-out positives and reports recall@10 and MRR
(`val_recall_at_10`, `val_mrr`). The result, models/NAME, is a model folder plus
`embedding_head.safetensors`; quark.retrieval.embedding uses the head whenever it is present:

    quark finetune embed --model tiny --builtin stdlib --name tiny-embed
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from quark.align.batches import _epoch_order
from quark.align.reward import publish_with_head
from quark.align.run import Context, Job, run
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import assemble_with_head, load_model
from quark.models.embedding_head import EmbeddingHead
from quark.models.llm import LLM, LLMConfig
from quark.retrieval import metrics
from quark.retrieval.embedding import HEAD_FILE, embed_texts
from quark.retrieval.pairs import TextPair, mine_negatives, read_text_pairs, write_pairs
from quark.tokenizer import Tokenizer

_HEAD = "embedding_head."
# stdlib: the core pairs (DEFAULT_MODULES and the doc topics, 20% held out by group) plus, on the
# training side only, the rest of the standard library's functions and methods; stdlib-core: the
# core pairs alone (the same held-out pairs). See quark.retrieval.pairs.write_pairs.
BUILTIN = ("stdlib", "stdlib-core")


class ContrastiveModel(LLM):
    """An LLM with an embedding head. forward(idx, mask) → (unit vectors, 1/temperature); without
    a mask it is the plain LLM (so quark.retrieval.embedding can embed with it during evaluation)."""

    def __init__(self, cfg: LLMConfig, dim: int = 0, *, temperature: float = 0.05,
                 learn_temperature: bool = True) -> None:
        super().__init__(cfg)
        self.embedding_head = EmbeddingHead(cfg.n_embd, dim or cfg.n_embd, temperature=temperature,
                                            learn_temperature=learn_temperature)
        if not cfg.tie_embeddings:
            self.lm_head.requires_grad_(False)  # unused by embeddings: no gradient, nothing for DDP to wait on

    def forward(self, idx: torch.Tensor, mask: torch.Tensor | None = None, **kwargs: Any):  # type: ignore[override]
        if mask is None:
            return super().forward(idx, **kwargs)
        return self.embedding_head(super().forward(idx, return_hidden=True), mask), self.embedding_head.scale

    @classmethod
    def assemble(cls, llm: LLM, head: EmbeddingHead) -> ContrastiveModel:
        model = assemble_with_head(lambda: cls(llm.config, head.dim), llm, head.state_dict(), _HEAD)
        model.embedding_head.log_scale.requires_grad_(head.log_scale.requires_grad)
        return model


class TextPairBatches:
    """Pairs with their hard negatives as a Trainer data source.

    take(start, count) → input_ids/mask (count·(2+h), T), right-padded: rows [0, count) are the
    queries, [count, 2·count) their positives, then each pair's h negatives in pair order;
    `doc_ids` (count·(1+h),) and `pos_ids` (count,) number distinct texts, so the loss can tell a
    duplicate of a query's positive from a true negative.
    """

    def __init__(self, tokenizer: Tokenizer, pairs: Sequence[TextPair], seq_len: int, *, seed: int | None) -> None:
        self.pairs, self.seed, self.pad_id, self._cache = list(pairs), seed, tokenizer.pad_id, {}
        counts = {len(p.negatives) for p in self.pairs}
        if len(counts) != 1:
            raise ValueError("every pair needs the same number of negatives (see mine_negatives)")
        self.negatives = counts.pop()
        texts = list(dict.fromkeys(t for p in self.pairs for t in (p.query, p.positive, *p.negatives)))
        self.text_id = {t: i for i, t in enumerate(texts)}
        self.ids = [tokenizer.encode(t)[:seq_len] or [tokenizer.bos_id] for t in texts]

    def __len__(self) -> int:
        return len(self.pairs)

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        chosen = [self.pairs[_epoch_order(len(self), self.seed, i, self._cache)] for i in range(start, start + count)]
        queries = [self.text_id[p.query] for p in chosen]
        docs = [self.text_id[p.positive] for p in chosen] + [self.text_id[n] for p in chosen for n in p.negatives]
        rows = [self.ids[i] for i in queries + docs]
        width = max(map(len, rows))
        idx = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for r, ids in enumerate(rows):
            idx[r, :len(ids)] = torch.tensor(ids)
            mask[r, :len(ids)] = True
        return {"input_ids": idx, "mask": mask, "doc_ids": torch.tensor(docs), "pos_ids": torch.tensor(docs[:count])}


def info_nce_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ over the batch's pairs of the two-way InfoNCE loss, and the number of pairs."""
    vectors, scale = model(batch["input_ids"], batch["mask"])
    pos_ids, doc_ids = batch["pos_ids"], batch["doc_ids"]
    b = pos_ids.numel()
    queries, docs = vectors[:b], vectors[b:]
    target = torch.arange(b, device=vectors.device)
    eye = torch.eye(b, len(doc_ids), dtype=torch.bool, device=vectors.device)
    same = (doc_ids[None, :] == pos_ids[:, None]) & ~eye  # a duplicate of the query's own positive
    q_to_d = (scale * queries @ docs.T).masked_fill(same, float("-inf"))
    d_to_q = (scale * docs[:b] @ queries.T).masked_fill(same[:, :b].T, float("-inf"))
    loss = F.cross_entropy(q_to_d, target, reduction="sum") + F.cross_entropy(d_to_q, target, reduction="sum")
    return loss / 2, torch.tensor(b, device=vectors.device)


def retrieval_scores(embed: Callable[[list[str]], Any], pairs: Sequence[TextPair], k: int = 10) -> dict[str, float]:
    """recall@k and MRR of `embed` on pairs: each query ranks every distinct positive of the set."""
    passages = list(dict.fromkeys(p.positive for p in pairs))
    index = {t: i for i, t in enumerate(passages)}
    relevant = [{index[p.positive]} for p in pairs]
    rankings = metrics.dense_rankings(embed([p.query for p in pairs]), embed(passages), max(k, 100))
    return {f"recall_at_{k}": metrics.recall_at_k(rankings, relevant, k), "mrr": metrics.mrr(rankings, relevant)}


def _held_out(tokenizer: Tokenizer, pairs: Sequence[TextPair]) -> Callable[[nn.Module], dict[str, Any]]:
    def evaluate(model: nn.Module) -> dict[str, Any]:
        scores = retrieval_scores(lambda texts: embed_texts(model, tokenizer, texts, head=model.embedding_head), pairs)
        return {f"val_{key}": value for key, value in scores.items()}
    return evaluate


def build(ctx: Context) -> Job:
    t, settings, tok = ctx.recipe.train, ctx.recipe.embed, ctx.tokenizer
    train_pairs = mine_negatives(read_text_pairs(ctx.data.train), settings.hard_negatives, seed=t.seed)
    train = TextPairBatches(tok, train_pairs, t.seq_len, seed=t.seed)
    val_pairs = read_text_pairs(ctx.data.val) if ctx.data.val else []
    val = None
    if len({p.positive for p in val_pairs}) >= 2:
        val = TextPairBatches(tok, mine_negatives(val_pairs, settings.hard_negatives, seed=0), t.seq_len, seed=None)
    base = load_model(ctx.base_folder)
    head = EmbeddingHead(ctx.config.n_embd, settings.dim or ctx.config.n_embd, temperature=settings.temperature,
                         learn_temperature=settings.learn_temperature)
    model = ContrastiveModel.assemble(base, head)

    def publish(step: Path, folder: Path) -> None:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in ContrastiveModel(ctx.config, head.dim).state_dict().items()}
        publish_with_head(ctx, step, folder, shapes, _HEAD, HEAD_FILE,
                          {"embedding_head": HEAD_FILE, "embedding_dim": head.dim}, "quark-embedding-head")

    info = {"train_pairs": len(train), "hard_negatives": settings.hard_negatives, "embedding_dim": head.dim}
    evaluated = val_pairs[:settings.eval_pairs]
    if val is not None:
        info["val_pairs"] = len(val_pairs)
    return Job(model, train, info_nce_loss, publish, val=val, val_samples=min(t.eval_windows, len(val)) if val else 0,
               on_eval=_held_out(tok, evaluated) if val is not None else None, info=info)


def builtin_data(home: Home, builtin: str, *, seed: int = 0, val_fraction: float = 0.2) -> str:
    """The folder of a built-in pair set under data/ (written the first time it is asked for)."""
    if builtin not in BUILTIN:
        raise QuarkError(f"unknown built-in pair set {builtin!r} (built in: {', '.join(BUILTIN)})")
    folder = home.dataset_dir(f"{builtin}-pairs")
    if not (folder / "train.jsonl").is_file():
        write_pairs(folder, seed=seed, val_fraction=val_fraction, wider=builtin == "stdlib")
    return str(folder)


def resolve_pairs(home: Home, data: str | None, builtin: str | None, resume: bool) -> str | None:
    """--data or --builtin (exactly one for a new run; a resumed run reads its own back)."""
    if data and builtin:
        raise QuarkError("give --data PAIRS.jsonl or --builtin stdlib, not both")
    if builtin:
        return builtin_data(home, builtin)
    if not data and not resume:
        raise QuarkError("a new run needs --data PAIRS.jsonl (query, positive[, negatives]) or --builtin stdlib")
    return data


def embed(home: Home, *, name: str, data: str | None = None, builtin: str | None = None, resume: bool = False,
          **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune embed`: see quark.align.run.run for the other arguments."""
    return run(home, "embed", build, name=name, data=resolve_pairs(home, data, builtin, resume), resume=resume,
               **kwargs)
