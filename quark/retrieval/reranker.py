"""`quark finetune rerank`: the reranker (the blueprint's grounding head).

A cross-encoder: the question as a user turn and the passage as the reply, in the chat template,
scored by a scalar head on the final <|end|> — the reward model's network (quark.align.reward),
trained with another loss. For each training question the supported passage is scored against a
BM25-mined hard negative (topically close, does not answer) and its corrupted twin (the same
passage with an entity, number or identifier that the question names swapped for another,
quark.retrieval.pairs.Corruptor), and the loss is the listwise softmax cross-entropy with the
supported passage as the answer. So it learns to rank passages that support an answer above ones
that merely look like they do.

Data: the pairs JSONL of `quark finetune embed` (query, positive[, negatives]), or --builtin
stdlib. Each evaluation reports, on held-out questions, how often the supported passage outscores
its corrupted twin (`val_twin_accuracy`, the blueprint's gate is 0.8) and the hard negative
(`val_negative_accuracy`). The result is a reward-model folder whose config.json says
`"reranker": true`; `Reranker.load(folder).rank(question, passages)` reorders passages.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from quark.align.batches import _epoch_order, pad_rows
from quark.align.reward import HEAD_FILE, RewardModel, RewardScorer, publish_with_head
from quark.align.run import Context, Job, run
from quark.errors import QuarkError
from quark.home import Home
from quark.modelio import load_model, read_config_json
from quark.retrieval.contrastive import resolve_pairs
from quark.retrieval.pairs import Corruptor, TextPair, mine_negatives, read_text_pairs
from quark.tokenizer import Tokenizer

_HEAD = "reward_head."


def encode_pair(tokenizer: Tokenizer, question: str, passage: str, limit: int) -> tuple[list[int], int]:
    """(ids, prompt length): the question (its start, at most half of `limit`) as a user turn, the
    passage as the reply cut to what fits, then <|end|> where the score is read. Cutting is fine
    here: a score is not a reply, and a passage's opening says what it is about."""
    question_ids = tokenizer.encode(question)[:limit // 2]
    prompt = tokenizer.encode_chat([{"role": "user", "content": tokenizer.decode(question_ids)}],
                                   add_generation_prompt=True)[:limit // 2 + 8]
    room = max(1, limit - len(prompt) - 1)
    return prompt + tokenizer.encode(passage)[:room] + [tokenizer.end_id], len(prompt)


def groups(pairs: Sequence[TextPair], hard_negatives: int, corrupted: int, *, seed: int) -> list[list[str]]:
    """Per pair: [supported passage, its hard negatives…, its corrupted twins…]. A pair whose
    passage has nothing to corrupt takes another mined negative in the twin's place (the group
    size stays fixed)."""
    mined = mine_negatives(pairs, hard_negatives + corrupted, seed=seed)
    corruptor = Corruptor.for_passages((p.positive for p in pairs), seed=seed)
    rng = random.Random(seed)
    out = []
    for pair in mined:
        twins = [t for t in (corruptor.twin(pair.query, pair.positive) for _ in range(corrupted)) if t and t != pair.positive]
        spare = list(pair.negatives[hard_negatives:])
        rng.shuffle(spare)
        out.append([pair.positive, *pair.negatives[:hard_negatives], *(twins + spare)[:corrupted]])
    return out


class RerankBatches:
    """take(start, count) → input_ids (count·G, T), last (count·G,), pair (count,): question i's
    group of G passages, the supported one first."""

    def __init__(self, tokenizer: Tokenizer, pairs: Sequence[TextPair], seq_len: int, hard_negatives: int,
                 corrupted: int, *, seed: int | None) -> None:
        self.seed, self.pad_id, self._cache = seed, tokenizer.pad_id, {}
        self.group_size = 1 + hard_negatives + corrupted
        self.rows = [[encode_pair(tokenizer, p.query, passage, seq_len) for passage in group]
                     for p, group in zip(pairs, groups(pairs, hard_negatives, corrupted, seed=seed or 0))]

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        return self.batch([_epoch_order(len(self), self.seed, i, self._cache) for i in range(start, start + count)])

    def batch(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        out = pad_rows([row for i in index for row in self.rows[i]], self.pad_id)
        del out["labels"]
        out["pair"] = torch.tensor(list(index))
        return out


def listwise_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ over questions of -log softmax(scores)[supported], and the number of questions."""
    count = batch["pair"].numel()
    scores = model(batch["input_ids"], batch["last"]).view(count, -1)
    target = torch.zeros(count, dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target, reduction="sum"), torch.tensor(count, device=scores.device)


def group_accuracy(model: nn.Module, data: RerankBatches, hard_negatives: int, batch: int = 8) -> dict[str, float]:
    """How often the supported passage outscores its hard negative(s) and its corrupted twin(s)."""
    device = next(model.parameters()).device
    scores = []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            rows = data.batch(range(start, min(start + batch, len(data))))
            s = model(rows["input_ids"].to(device), rows["last"].to(device)).double().cpu()
            scores.append(s.view(rows["pair"].numel(), -1))
    s = torch.cat(scores)
    negatives, twins = s[:, 1:1 + hard_negatives], s[:, 1 + hard_negatives:]
    out = {}
    if negatives.numel():
        out["val_negative_accuracy"] = float((s[:, :1] > negatives).double().mean())
    if twins.numel():
        out["val_twin_accuracy"] = float((s[:, :1] > twins).double().mean())
    return out


def build(ctx: Context) -> Job:
    t, settings, tok = ctx.recipe.train, ctx.recipe.rerank, ctx.tokenizer
    train = RerankBatches(tok, read_text_pairs(ctx.data.train), t.seq_len, settings.hard_negatives, settings.corrupted,
                          seed=t.seed)
    val = None
    if ctx.data.val:
        held_out = read_text_pairs(ctx.data.val)[:settings.eval_pairs]
        if len({p.positive for p in held_out}) >= 2:
            val = RerankBatches(tok, held_out, t.seq_len, settings.hard_negatives, settings.corrupted, seed=None)
    model = RewardModel.assemble(load_model(ctx.base_folder))

    def publish(step: Path, folder: Path) -> None:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in RewardModel(ctx.config).state_dict().items()}
        publish_with_head(ctx, step, folder, shapes, _HEAD, HEAD_FILE, {"reranker": True, "reward_head": HEAD_FILE,
                                                                        "rerank_seq_len": t.seq_len}, "quark-reranker-head")

    info = {"train_questions": len(train), "group_size": train.group_size}
    if val is not None:
        info["val_questions"] = len(val)
    return Job(model, train, listwise_loss, publish, val=val, val_samples=min(t.eval_windows, len(val)) if val else 0,
               on_eval=(lambda m: group_accuracy(m, val, settings.hard_negatives)) if val is not None else None, info=info)


def rerank(home: Home, *, name: str, data: str | None = None, builtin: str | None = None, resume: bool = False,
           **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune rerank`: see quark.align.run.run for the other arguments."""
    return run(home, "rerank", build, name=name, data=resolve_pairs(home, data, builtin, resume), resume=resume, **kwargs)


class Reranker(RewardScorer):
    """A trained reranker: `scores(question, passages)` and `rank(question, passages)`."""

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu") -> "Reranker":
        config = read_config_json(folder, "reranker")
        if not config.get("reranker"):
            raise QuarkError(f"{folder} is not a reranker (train one with quark finetune rerank)")
        scorer = super().load(folder, device=device)
        scorer.seq_len = int(config.get("rerank_seq_len") or scorer.model.config.max_seq_len)
        return scorer

    @torch.no_grad()
    def scores(self, question: str, passages: Sequence[str]) -> list[float]:
        limit = min(getattr(self, "seq_len", self.model.config.max_seq_len), self.model.config.max_seq_len)
        rows = [encode_pair(self.tokenizer, question, p, limit) for p in passages]
        device = self.model.embed_tokens.weight.device
        out: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            batch = pad_rows(rows[start:start + self.batch_size], self.tokenizer.pad_id)
            out += self.model(batch["input_ids"].to(device), batch["last"].to(device)).tolist()
        return out

    def rank(self, question: str, passages: Sequence[str]) -> list[int]:
        """Indices of `passages`, best supported first."""
        scores = self.scores(question, passages)
        return sorted(range(len(passages)), key=lambda i: -scores[i])
