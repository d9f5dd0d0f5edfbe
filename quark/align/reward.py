"""Reward models: the LLM's final hidden state at a reply's last token (its <|end|>) through a
scalar head, trained on preference pairs with the Bradley–Terry loss -log σ(r(chosen) − r(rejected)).

A reward model folder is a model folder (config.json, model.safetensors, tokenizer.model,
card.md) plus `reward_head.safetensors` (weight (1, n_embd), bias (1,)), so the network stays
loadable by everything that reads model folders. `RewardScorer` scores replies:

    scorer = RewardScorer.load(home.model_dir("tiny-rm"))
    scorer.score(["What does `shlex.quote` do?"], ["Return a shell-escaped version of the string s."])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from quark.align.batches import PairBatches, encode_reply, pad_rows
from quark.align.data import read_pairs
from quark.align.run import Context, Job, now, run
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import assemble_with_head, check_state, load_model, load_state, load_tokenizer, save_derived
from quark.models.llm import LLM, LLMConfig
from quark.tokenizer import Tokenizer
from quark.train import checkpoint

HEAD_FILE = "reward_head.safetensors"
_HEAD = "reward_head."


class RewardModel(LLM):
    """An LLM whose forward returns one reward per row: head(hidden state at position `last`).

    A subclass rather than a wrapper, so parameter names stay the LLM's own (checkpoints store a
    tied lm_head once, as for any LLM) and DDP/FSDP see every trained weight inside forward.
    """

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__(cfg)
        self.reward_head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.reward_head.weight)  # every reply scores 0 until training says otherwise
        nn.init.zeros_(self.reward_head.bias)
        if not cfg.tie_embeddings:
            self.lm_head.requires_grad_(False)  # unused by rewards: no gradient, nothing for DDP to wait on

    def forward(self, idx: torch.Tensor, last: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        hidden = super().forward(idx, return_hidden=True)
        picked = hidden[torch.arange(idx.shape[0], device=idx.device), last]
        return self.reward_head(picked).squeeze(-1).float()

    @classmethod
    def assemble(cls, llm: LLM, head: dict[str, torch.Tensor] | None = None) -> RewardModel:
        """A reward model from an LLM's weights and a saved head (a fresh zero head when None)."""
        return assemble_with_head(lambda: cls(llm.config), llm, head or _zero_head(llm.config), _HEAD)

    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.reward_head.state_dict().items()}


def _zero_head(cfg: LLMConfig) -> dict[str, torch.Tensor]:
    return {"weight": torch.zeros(1, cfg.n_embd), "bias": torch.zeros(1)}


def bradley_terry_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ -log σ(r(chosen) − r(rejected)) over the batch's pairs, and their number."""
    rewards = model(batch["input_ids"], batch["last"])
    diff = rewards[0::2] - rewards[1::2]
    return -F.logsigmoid(diff).sum(), torch.tensor(diff.numel(), device=diff.device)


def pair_accuracy(model: nn.Module, pairs: PairBatches, batch_pairs: int) -> dict[str, float]:
    """Fraction of pairs whose chosen reply scores higher, and the mean reward gap."""
    device = next(model.parameters()).device
    gaps = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_pairs):
            batch = {k: v.to(device) for k, v in pairs.rows(range(start, min(start + batch_pairs, len(pairs)))).items()}
            rewards = model(batch["input_ids"], batch["last"]).double().cpu()
            gaps.append(rewards[0::2] - rewards[1::2])
    gap = torch.cat(gaps)
    return {"val_pair_accuracy": float((gap > 0).double().mean()), "val_reward_gap": float(gap.mean())}


def _held_out(val: PairBatches, batch_pairs: int) -> Callable[[nn.Module], dict[str, Any]]:
    return lambda model: pair_accuracy(model, val, batch_pairs)


def publish_with_head(ctx: Context, step: Path, folder: Path, shapes: dict[str, tuple[int, ...]], prefix: str,
                      head_file: str, extra_config: dict[str, Any], head_kind: str) -> None:
    """Write a model folder from the checkpoint of an LLM-with-a-head (reward model, embedding
    model, reranker): the LLM's weights as any model folder has them, the head's (the weights named
    `prefix…`) in `head_file`, so the network stays loadable by everything that reads model folders."""
    weights = checkpoint.load_weights(step, shapes, tied=ctx.config.tie_embeddings)
    head = {k[len(prefix):]: v.contiguous() for k, v in weights.items() if k.startswith(prefix)}
    with torch.device("meta"):
        llm = LLM(ctx.config)
    llm.load_state_dict({k: v for k, v in weights.items() if not k.startswith(prefix)}, assign=True)
    if ctx.config.tie_embeddings:
        llm.lm_head.weight = llm.embed_tokens.weight
    save_derived(folder, llm, ctx.base_folder,
                 extra_config={"source_run": ctx.name, "base_model": ctx.base, **extra_config, "created": now()})
    save_file(head, str(folder / head_file), metadata={"format": "pt", "kind": head_kind})


def build(ctx: Context) -> Job:
    t, tok = ctx.recipe.train, ctx.tokenizer
    train = PairBatches(tok, read_pairs(ctx.data.train), t.seq_len, seed=t.seed, what=str(ctx.data.train))
    val = PairBatches(tok, read_pairs(ctx.data.val), t.seq_len, seed=None,
                      what=str(ctx.data.val)) if ctx.data.val else None
    model = RewardModel.assemble(load_model(ctx.base_folder))

    def publish(step: Path, folder: Path) -> None:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in RewardModel(ctx.config).state_dict().items()}
        publish_with_head(ctx, step, folder, shapes, _HEAD, HEAD_FILE, {"reward_head": HEAD_FILE},
                          "quark-reward-head")

    info = {"train_pairs": len(train), "train_skipped": train.skipped}
    if val is not None:
        info.update(val_pairs=len(val), val_skipped=val.skipped)
    return Job(model, train, bradley_terry_loss, publish, val=val,
               val_samples=min(t.eval_windows, len(val)) if val else 0,
               on_eval=_held_out(val, t.micro_batch) if val else None, info=info)


def reward(home: Home, *, name: str, **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune reward`: see quark.align.run.run for the arguments. Reward models train
    every weight (a LoRA recipe section is not part of the reward recipe)."""
    return run(home, "reward", build, name=name, **kwargs)


class RewardScorer:
    """A loaded reward model and its tokenizer: `score(prompts, replies)` -> one float per reply."""

    def __init__(self, model: RewardModel, tokenizer: Tokenizer, batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu") -> RewardScorer:
        folder = Path(folder)
        if not (folder / HEAD_FILE).is_file():
            raise QuarkError(f"{folder} is not a reward model (no {HEAD_FILE}; train one with quark finetune reward)")
        llm = load_model(folder, device=device)
        head = load_state(folder / HEAD_FILE)
        check_state(head, {k: tuple(v.shape) for k, v in _zero_head(llm.config).items()},
                    f"{folder / HEAD_FILE} does not match config.json")
        return cls(RewardModel.assemble(llm, {k: v.to(device) for k, v in head.items()}), load_tokenizer(folder))

    @torch.no_grad()
    def score(self, prompts: Sequence[str | list[dict]], replies: Sequence[str]) -> list[float]:
        """The reward of each reply to its prompt (a user message, or a conversation so far)."""
        if len(prompts) != len(replies):
            raise ValueError("one prompt per reply")
        limit = self.model.config.max_seq_len
        rows = [encode_reply(self.tokenizer, [{"role": "user", "content": p}] if isinstance(p, str) else p, r)
                for p, r in zip(prompts, replies)]
        too_long = [i for i, (ids, _) in enumerate(rows) if len(ids) > limit]
        if too_long:
            raise QuarkError(f"reply {too_long[0]}: prompt and reply exceed the reward model's context of {limit} "
                             "tokens (nothing is cut silently)")
        device = self.model.embed_tokens.weight.device
        out: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            batch = pad_rows(rows[start:start + self.batch_size], self.tokenizer.pad_id)
            out += self.model(batch["input_ids"].to(device), batch["last"].to(device)).tolist()
        return out
