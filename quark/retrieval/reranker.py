"""`quark finetune rerank`: the reranker (the blueprint's grounding head).

A cross-encoder: the question as a user turn and the passage as the reply, in the chat template,
scored by a scalar head on the final <|end|> — the reward model's network (quark.align.reward),
trained with another loss — plus learned weights on four support features: two lexical ones
(the share of the identifiers, names and numbers the question names that the passage names too;
quark.retrieval.pairs.support_features) and two from the network's own language model, the mean
and the lowest log-probability of the passage's tokens. A swapped entity is a surprising token in
otherwise fluent text, which is what the lowest log-probability sees; a small model learns only
slowly to compare tokens across question and passage, which is what the lexical features give it.
The lexical weights start at 5 (SUPPORT_PRIOR: a passage that names what the question names is
evidence of support), the others at 0; training moves all of them with the network. Why 5: a
twin differs from its original by one named term, a key-term share lower by ~0.2 (a question
names ~5), and on held-out stdlib questions that share alone ranks the original above its twin
0.96 of the time; but Adam moves each weight by about the learning rate a step (≤ 0.2 over a
200-step run at 1e-3), so a prior of 1 stayed near 1 and the head's noisier score outweighed a
0.2 difference (0.79 supported-over-twin). At 5 one missing term costs a unit of score: 0.94,
with supported-over-hard-negative unchanged (0.83; benchmarks/RESULTS.md, Retrieval). For each
training question the supported passage is scored against a
BM25-mined hard negative (topically close, does not answer) and its corrupted twin (the same
passage with an entity, number or identifier that the question names swapped for another,
quark.retrieval.pairs.Corruptor; a passage naming nothing the question names has no twin, and a
second mined negative takes its place), and the loss is the listwise softmax cross-entropy with the
supported passage as the answer. So it learns to rank passages that support an answer above ones
that merely look like they do.

Data: the pairs JSONL of `quark finetune embed` (query, positive[, negatives]), or --builtin
stdlib. Each evaluation reports, on held-out questions, how often the supported passage outscores
its corrupted twin (`val_twin_accuracy` over the `val_twin_questions` that have a twin; the blueprint's gate is 0.8)
and the hard negative (`val_negative_accuracy`). The result, models/NAME, is a model folder plus
`rerank_head.safetensors`; `Reranker.load(folder).rank(question, passages)` reorders passages.
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
from quark.align.reward import RewardModel, publish_with_head
from quark.align.run import Context, Job, run
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import assemble_with_head, check_state, load_model, load_state, load_tokenizer, read_config_json
from quark.models.llm import LLM, LLMConfig
from quark.retrieval.contrastive import resolve_pairs
from quark.retrieval.pairs import Corruptor, TextPair, mine_negatives, read_text_pairs, support_features
from quark.tokenizer import Tokenizer

HEAD_FILE = "rerank_head.safetensors"
_HEAD = "reward_"  # reward_head.* (the network's score) and reward_support.* (the features' weights)
FEATURES = 4  # 2 lexical (pairs.support_features) + mean and min passage token log-probability
SUPPORT_PRIOR = (5.0, 5.0, 0.0, 0.0)  # the features' starting weights (why 5: above); training moves them


class RerankModel(RewardModel):
    """The reward model's network plus learned weights on the support features:
    forward(idx, last, support) = head(hidden at `last`) + support · w."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__(cfg)
        self.reward_support = nn.Linear(FEATURES, 1, bias=False)
        with torch.no_grad():  # the prior: naming what the question names is evidence of support
            self.reward_support.weight.copy_(torch.tensor([SUPPORT_PRIOR]))

    def forward(self, idx: torch.Tensor, last: torch.Tensor, support: torch.Tensor,  # type: ignore[override]
                start: torch.Tensor) -> torch.Tensor:
        """`start`: each row's first passage position; the passage runs to `last` (its <|end|>)."""
        hidden = LLM.forward(self, idx, return_hidden=True)
        rows = torch.arange(idx.shape[0], device=idx.device)
        score = self.reward_head(hidden[rows, last]).squeeze(-1).float()
        logp = torch.log_softmax(self.lm_head(hidden[:, :-1]).float(), dim=-1).gather(-1, idx[:, 1:, None]).squeeze(-1)
        position = torch.arange(idx.shape[1] - 1, device=idx.device)[None, :]
        passage = (position >= start[:, None] - 1) & (position < last[:, None] - 1)  # predictions of passage tokens
        count = passage.sum(1).clamp_min(1)
        mean = (logp * passage).sum(1) / count
        lowest = logp.masked_fill(~passage, 0.0).min(1).values
        features = torch.cat([support.float(), mean[:, None], lowest[:, None]], dim=1)
        return score + self.reward_support(features).squeeze(-1)

    @classmethod
    def assemble(cls, llm: LLM, head: dict[str, torch.Tensor] | None = None) -> RerankModel:
        """From an LLM's weights and a saved head (`head.*`, `support.*`; zeros when None)."""
        head = head or {"head.weight": torch.zeros(1, llm.config.n_embd), "head.bias": torch.zeros(1),
                        "support.weight": torch.tensor([SUPPORT_PRIOR])}
        return assemble_with_head(lambda: cls(llm.config), llm, head, _HEAD)


def encode_pair(tokenizer: Tokenizer, question: str, passage: str, limit: int) -> tuple[list[int], int]:
    """(ids, prompt length): the question (its start, at most half of `limit`) as a user turn, the
    passage as the reply cut to what fits, then <|end|> where the score is read. Cutting is fine
    here: a score is not a reply, and a passage's opening says what it is about."""
    question_ids = tokenizer.encode(question)[:limit // 2]
    prompt = tokenizer.encode_chat([{"role": "user", "content": tokenizer.decode(question_ids)}],
                                   add_generation_prompt=True)[:limit // 2 + 8]
    room = max(1, limit - len(prompt) - 1)
    return prompt + tokenizer.encode(passage)[:room] + [tokenizer.end_id], len(prompt)


def groups(pairs: Sequence[TextPair], hard_negatives: int, corrupted: int, *,
           seed: int) -> list[tuple[list[str], int]]:
    """Per pair: ([supported passage, its hard negatives…, its corrupted twins…], how many twins
    are real). A pair whose passage has nothing to corrupt takes other mined negatives in the
    twins' places (the group size stays fixed)."""
    mined = mine_negatives(pairs, hard_negatives + corrupted, seed=seed)
    corruptor = Corruptor.for_passages((p.positive for p in pairs), seed=seed)
    rng = random.Random(seed)
    out = []
    for pair in mined:
        twins = [t for t in (corruptor.twin(pair.query, pair.positive) for _ in range(corrupted))
                 if t and t != pair.positive]
        spare = list(pair.negatives[hard_negatives:])
        rng.shuffle(spare)
        out.append(([pair.positive, *pair.negatives[:hard_negatives], *(twins + spare)[:corrupted]],
                    min(len(twins), corrupted)))
    return out


def encode_scored(tokenizer: Tokenizer, question: str, passage: str, limit: int) -> tuple[list[int], int, list[float]]:
    """encode_pair plus the lexical support features of the part of the passage that fits."""
    ids, start = encode_pair(tokenizer, question, passage, limit)
    return ids, start, support_features(question, tokenizer.decode(ids[start:-1]))


def pad_scored(rows: Sequence[tuple[list[int], int, list[float]]], pad_id: int) -> dict[str, torch.Tensor]:
    """pad_rows for (ids, prompt length, support features) rows: input_ids, last, support."""
    out = pad_rows([(ids, n) for ids, n, _ in rows], pad_id)
    del out["labels"]
    out["support"] = torch.tensor([f for _, _, f in rows], dtype=torch.float32)
    out["start"] = torch.tensor([n for _, n, _ in rows])
    return out


class RerankBatches:
    """take(start, count) → input_ids (count·G, T), last (count·G,), pair (count,): question i's
    group of G passages, the supported one first."""

    def __init__(self, tokenizer: Tokenizer, pairs: Sequence[TextPair], seq_len: int, hard_negatives: int,
                 corrupted: int, *, seed: int | None) -> None:
        self.seed, self.pad_id, self._cache = seed, tokenizer.pad_id, {}
        self.group_size = 1 + hard_negatives + corrupted
        built = groups(pairs, hard_negatives, corrupted, seed=seed or 0)
        self.rows = [[encode_scored(tokenizer, p.query, passage, seq_len) for passage in group]
                     for p, (group, _) in zip(pairs, built)]
        self.twins = [real for _, real in built]

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        return self.batch([_epoch_order(len(self), self.seed, i, self._cache) for i in range(start, start + count)])

    def batch(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        out = pad_scored([row for i in index for row in self.rows[i]], self.pad_id)
        out["pair"] = torch.tensor(list(index))
        return out


def listwise_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ over questions of -log softmax(scores)[supported], and the number of questions."""
    count = batch["pair"].numel()
    scores = model(batch["input_ids"], batch["last"], batch["support"], batch["start"]).view(count, -1)
    target = torch.zeros(count, dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target, reduction="sum"), torch.tensor(count, device=scores.device)


def group_accuracy(model: nn.Module, data: RerankBatches, hard_negatives: int, batch: int = 8) -> dict[str, float]:
    """How often the supported passage outscores its hard negative(s) and its corrupted twin(s)."""
    device = next(model.parameters()).device
    scores = []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            rows = data.batch(range(start, min(start + batch, len(data))))
            s = model(*(rows[k].to(device) for k in ("input_ids", "last", "support", "start"))).double().cpu()
            scores.append(s.view(rows["pair"].numel(), -1))
    s = torch.cat(scores)
    negatives = s[:, 1:1 + hard_negatives]
    out: dict[str, float] = {}
    win = lambda a, b: (a > b).double() + 0.5 * (a == b).double()  # noqa: E731 - a tie is half a win
    if negatives.numel():
        out["val_negative_accuracy"] = float(win(s[:, :1], negatives).mean())
    wins = [float(win(s[i, 0], s[i, 1 + hard_negatives + j])) for i, real in enumerate(data.twins) for j in range(real)]
    if wins:
        out["val_twin_accuracy"] = sum(wins) / len(wins)
        out["val_twin_questions"] = sum(1 for real in data.twins if real)
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
    model = RerankModel.assemble(load_model(ctx.base_folder))

    def publish(step: Path, folder: Path) -> None:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in RerankModel(ctx.config).state_dict().items()}
        publish_with_head(ctx, step, folder, shapes, _HEAD, HEAD_FILE,
                          {"reranker": HEAD_FILE, "rerank_seq_len": t.seq_len}, "quark-reranker-head")

    info = {"train_questions": len(train), "group_size": train.group_size}
    if val is not None:
        info["val_questions"] = len(val)
    return Job(model, train, listwise_loss, publish, val=val, val_samples=min(t.eval_windows, len(val)) if val else 0,
               on_eval=(lambda m: group_accuracy(m, val, settings.hard_negatives)) if val is not None else None,
               info=info)


def rerank(home: Home, *, name: str, data: str | None = None, builtin: str | None = None, resume: bool = False,
           **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune rerank`: see quark.align.run.run for the other arguments."""
    return run(home, "rerank", build, name=name, data=resolve_pairs(home, data, builtin, resume), resume=resume,
               **kwargs)


class Reranker:
    """A trained reranker: `scores(question, passages)` and `rank(question, passages)`."""

    def __init__(self, model: RerankModel, tokenizer: Tokenizer, seq_len: int, batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.seq_len = min(seq_len, model.config.max_seq_len)

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu") -> Reranker:
        folder = Path(folder)
        config = read_config_json(folder, "reranker")
        if not (folder / HEAD_FILE).is_file() or not config.get("reranker"):
            raise QuarkError(f"{folder} is not a reranker (no {HEAD_FILE}; train one with quark finetune rerank)")
        llm = load_model(folder, device=device)
        head = load_state(folder / HEAD_FILE)
        n = llm.config.n_embd
        check_state(head, {"head.weight": (1, n), "head.bias": (1,), "support.weight": (1, FEATURES)},
                    f"{folder / HEAD_FILE} does not match config.json")
        model = RerankModel.assemble(llm, {k: v.to(device) for k, v in head.items()})
        return cls(model, load_tokenizer(folder), int(config.get("rerank_seq_len") or llm.config.max_seq_len))

    @torch.no_grad()
    def scores(self, question: str, passages: Sequence[str]) -> list[float]:
        rows = [encode_scored(self.tokenizer, question, p, self.seq_len) for p in passages]
        device = self.model.embed_tokens.weight.device
        out: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            padded = pad_scored(rows[start:start + self.batch_size], self.tokenizer.pad_id)
            batch = {k: v.to(device) for k, v in padded.items()}
            out += self.model(batch["input_ids"], batch["last"], batch["support"], batch["start"]).tolist()
        return out

    def rank(self, question: str, passages: Sequence[str]) -> list[int]:
        """Indices of `passages`, best supported first."""
        scores = self.scores(question, passages)
        return sorted(range(len(passages)), key=lambda i: -scores[i])
