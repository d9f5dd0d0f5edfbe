"""PPO from a reward model (Schulman et al., 2017; as in Ouyang et al., 2022) through the shared Trainer.

The loop alternates two phases, both inside the Trainer's data source:

    rollout   the policy (through Quark's inference engine) samples one reply per prompt, seeded by
              (train.seed, rollout index, row); the reward model scores prompt + reply; one forward
              of the policy (log-probs, values) and of the frozen reference (log-probs) per batch
    update    `ppo.epochs` passes over the batch in minibatches (one optimizer step each) of the
              clipped policy loss + vf_coef · clipped value loss (− entropy_coef · entropy)

Per reply token t the reward is −kl_coef · (log π_old(t) − log ref(t)), and the last token adds
the reward model's score; GAE(γ, λ) over the value head's estimates gives the advantages
(whitened over the batch) and the value targets. A reply ends at <|end|> (the chat template's end
of turn) or at `max_new_tokens`.

Prompts are `--data`: any JSONL of `prompt` rows (preference files qualify) or chat `messages` rows
asked up to their first assistant turn (quark.align.data.read_prompts), so the SFT data itself
serves; its `val.jsonl` (or `--val`) holds the held-out prompts each evaluation samples with fixed
seeds, reporting the reward model's mean score and the KL to the reference.

The value head (`ActorCritic.value_head`, one Linear on the policy's final hidden states) is part
of the trained module, so checkpoints hold it; the published model (or LoRA adapter) carries it
as `value_head.safetensors`. The reference is the starting policy, loaded once more and frozen.

Exact resume: sample index i of the Trainer is row `order[(i mod N·E) mod N]` of rollout
`i // (N·E)` (N prompts, E epochs, a seeded order per epoch), a rollout is generated from the
weights at its first step, and the recipe check makes every checkpoint fall between rollouts. So a
resumed run regenerates the next rollout from restored weights exactly as the uninterrupted run
did, and nothing but the weights and optimizer needs saving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from quark.align.batches import _epoch_order
from quark.align.data import read_prompts
from quark.align.lora import add_lora
from quark.align.policy import publish_adapter
from quark.align.recipe import PpoSettings
from quark.align.reward import HEAD_FILE, RewardScorer, publish_with_head
from quark.align.run import Context, Job, recorded_value, run
from quark.errors import QuarkError
from quark.home import Home
from quark.inference.engine import Engine
from quark.inference.sampling import SamplingParams
from quark.modelfolder import load_model, load_state, load_tokenizer, read_config
from quark.models.llm import LLM, LLMConfig, rope_tables
from quark.tokenizer import Tokenizer
from quark.train.trainer import autocast, compute_dtype

VALUE_HEAD_FILE = "value_head.safetensors"
DEFAULT_RECIPE = "ppo-tiny"  # recipes/ppo-tiny.yaml
_HEAD = "value_head."


class ActorCritic(LLM):
    """The policy with a value head. `forward(idx, values=True)` returns (logits, values) from one
    pass; every other call is the LLM's own, so the inference engine generates from it as it is.
    A subclass (as the reward model is) so parameter names stay the LLM's and DDP sees the value
    head inside forward."""

    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__(cfg)
        self.value_head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)  # every state is worth 0 until the returns say otherwise
        nn.init.zeros_(self.value_head.bias)

    def forward(self, idx: torch.Tensor, *args: Any, values: bool = False, **kwargs: Any):  # type: ignore[override]
        if not values:
            return super().forward(idx, *args, **kwargs)
        hidden = super().forward(idx, return_hidden=True)
        return self.lm_head(hidden), self.value_head(hidden).squeeze(-1)

    @classmethod
    def assemble(cls, llm: LLM) -> ActorCritic:
        """The policy's weights and a fresh zero value head."""
        cfg = llm.config
        with torch.device("meta"):
            model = cls(cfg)
        head = {f"{_HEAD}weight": torch.zeros(1, cfg.n_embd), f"{_HEAD}bias": torch.zeros(1)}
        model.load_state_dict({**llm.state_dict(), **head}, assign=True)
        if cfg.tie_embeddings:
            model.lm_head.weight = model.embed_tokens.weight
        model.rope_cos, model.rope_sin = rope_tables(cfg, llm.rope_cos.device)
        return model


# -- sampling and scoring ------------------------------------------------------------------------

def sample_replies(policy: LLM, tokenizer: Tokenizer, prompts: Sequence[list[int]], settings: PpoSettings,
                   seeds: Sequence[int]) -> list[list[int]]:
    """One sampled reply per prompt through the inference engine; a reply that ended its turn
    keeps its <|end|> (the action that ended it). The model is left in the mode it was in."""
    was_training = policy.training
    engine = Engine(policy, tokenizer, "ppo-policy", compile="off")
    engine.stop_ids = {tokenizer.end_id}  # a chat reply ends its turn with <|end|>; EOS is just a token here
    params = [SamplingParams(max_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=int(seed))
              for seed in seeds]
    try:
        done = engine.generate(prompts, params)
    finally:
        policy.train(was_training)
    return [c.token_ids + ([tokenizer.end_id] if c.finish_reason == "stop" else []) for c in done]


@dataclass
class Sequences:
    """Prompt + reply rows as one causal-LM batch: input_ids (B, W) are each sequence but its last
    token; position t predicts `labels[t]` (token t+1), a reply token where `mask[t]`."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def of(cls, prompts: Sequence[list[int]], replies: Sequence[list[int]], pad_id: int) -> Sequences:
        width = max(len(p) + len(r) for p, r in zip(prompts, replies)) - 1
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        labels = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), width)
        for row, (prompt, reply) in enumerate(zip(prompts, replies)):
            seq = torch.tensor(prompt + reply)
            ids[row, :len(seq) - 1] = seq[:-1]
            labels[row, :len(seq) - 1] = seq[1:]
            mask[row, len(prompt) - 1:len(seq) - 1] = 1.0
        return cls(ids, labels, mask)


def token_logps(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """log π(label) per position under the tempered distribution the rollouts were sampled from."""
    return F.log_softmax(logits.float() / temperature, dim=-1).gather(-1, labels[..., None]).squeeze(-1)


@torch.no_grad()
def forward_logps(model: nn.Module, seqs: Sequences, temperature: float, chunk: int, dtype: torch.dtype,
                  *, values: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-position log-probs (B, W) of `seqs` under `model` (and the value head's estimates when
    `values`), in chunks of `chunk` rows, in the training forward's precision, on the CPU."""
    device = next(model.parameters()).device
    logps, vals = [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(seqs.input_ids), chunk):
            ids = seqs.input_ids[start:start + chunk].to(device)
            labels = seqs.labels[start:start + chunk].to(device)
            with autocast(dtype, device):
                out = model(ids, values=True) if values else model(ids)
            logits = out[0] if values else out
            logps.append(token_logps(logits, labels, temperature).cpu())
            if values:
                vals.append(out[1].float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(logps), torch.cat(vals) if values else None


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over each row's reply positions (`mask`, one
    contiguous run per row); the state after a reply's last token is terminal (value 0)."""
    follows = torch.cat([mask[:, 1:], mask.new_zeros(len(mask), 1)], 1)  # position t + 1 is still the reply
    next_values = torch.cat([values[:, 1:], values.new_zeros(len(values), 1)], 1) * follows
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(len(rewards))
    for t in reversed(range(rewards.shape[1])):
        running = deltas[:, t] + gamma * lam * follows[:, t] * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = (x * mask).sum() / mask.sum()
    var = (((x - mean) * mask) ** 2).sum() / mask.sum().clamp(min=2)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


# -- the rollout buffer, as the Trainer's data source --------------------------------------------

@dataclass
class Experience:
    """One rollout batch, row by row: the sequences and what PPO's update needs of each position."""

    seqs: Sequences
    logps: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def rows(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(list(index), dtype=torch.long)
        width = int(self.seqs.mask[index].nonzero()[:, 1].max()) + 1  # drop columns every chosen row pads
        pick = lambda x: x[index, :width]  # noqa: E731
        return {"input_ids": pick(self.seqs.input_ids), "labels": pick(self.seqs.labels), "mask": pick(self.seqs.mask),
                "logps": pick(self.logps), "values": pick(self.values), "advantages": pick(self.advantages),
                "returns": pick(self.returns)}


class Rollouts:
    """PPO's experience as a Trainer data source: take(start, count) generates rollout
    `start // (N·E)` from the policy as it is when first asked for it, then serves its rows in a
    seeded order per epoch (see the module docstring). `stats` holds the current rollout's figures
    and the time spent generating and scoring it."""

    def __init__(self, policy: ActorCritic, reference: nn.Module, scorer: RewardScorer, tokenizer: Tokenizer,
                 prompts: list[list[dict]], settings: PpoSettings, *, seed: int, chunk: int,
                 dtype: torch.dtype) -> None:
        self.policy, self.reference, self.scorer, self.tokenizer = policy, reference, scorer, tokenizer
        self.prompts = prompts
        self.prompt_ids = [tokenizer.encode_chat(p, add_generation_prompt=True) for p in prompts]
        self.settings, self.seed, self.chunk, self.dtype = settings, seed, chunk, dtype
        self.current: tuple[int, Experience] | None = None
        self.stats: dict[str, float] = {}
        self._order_cache: dict = {}

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        n, epochs = self.settings.rollout_prompts, self.settings.epochs
        rollout, within = divmod(start, n * epochs)
        epoch, position = divmod(within, n)
        if position + count > n:
            raise ValueError("a minibatch must not straddle two passes (ppo.rollout_prompts % minibatch == 0)")
        if self.current is None or self.current[0] != rollout:
            self.current = (rollout, self.experience(rollout))
        order = np.random.default_rng([self.seed, rollout, epoch]).permutation(n)
        return self.current[1].rows(order[position:position + count].tolist())

    def experience(self, rollout: int) -> Experience:
        """Sample, score and evaluate rollout batch `rollout` (its prompts: the next N of the
        prompt set in a seeded order per pass over it)."""
        s, n = self.settings, self.settings.rollout_prompts
        index = [_epoch_order(len(self.prompts), self.seed, rollout * n + j, self._order_cache) for j in range(n)]
        prompts = [self.prompt_ids[i] for i in index]
        seeds = np.random.default_rng([self.seed, 1, rollout]).integers(0, 2 ** 62, n)
        started = time.perf_counter()
        replies = sample_replies(self.policy, self.tokenizer, prompts, s, seeds)
        sampled = time.perf_counter()
        texts = [self.tokenizer.decode([t for t in r if t != self.tokenizer.end_id]) for r in replies]
        scores = torch.tensor(self.scorer.score([self.prompts[i] for i in index], texts))
        seqs = Sequences.of(prompts, replies, self.tokenizer.pad_id)
        logps, values = forward_logps(self.policy, seqs, s.temperature, self.chunk, self.dtype, values=True)
        ref, _ = forward_logps(self.reference, seqs, s.temperature, self.chunk, self.dtype)
        kl = (logps - ref) * seqs.mask
        rewards = -s.kl_coef * kl
        last = seqs.mask.cumsum(1).argmax(1)  # each reply's last position
        rewards[torch.arange(n), last] += scores
        advantages, returns = gae(rewards, values * seqs.mask, seqs.mask, s.gamma, s.lam)
        if s.whiten:
            advantages = whiten(advantages, seqs.mask)
        ended = sum(bool(r) and r[-1] == self.tokenizer.end_id for r in replies)
        self.stats = {"rollout": rollout, "reward": float(scores.mean()), "reward_std": float(scores.std()),
                      "kl": float(kl.sum(1).mean()), "reply_tokens": float(seqs.mask.sum(1).mean()),
                      "ended": ended / n, "rollout_s": sampled - started, "score_s": time.perf_counter() - sampled}
        return Experience(seqs, logps, values * seqs.mask, advantages, returns)


# -- the update ----------------------------------------------------------------------------------

class UpdateStats:
    """Sums over the reply tokens of one optimizer step's micro-batches (the loss adds to it, the
    Trainer's step_fields hook reads and resets it)."""

    KEYS = ("policy_loss", "value_loss", "entropy", "clip_frac", "approx_kl")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)
        self.tokens = 0.0

    def add(self, tokens: float, **sums: float) -> None:
        self.tokens += tokens
        for key, value in sums.items():
            self.sums[key] += value

    def drain(self) -> dict[str, float]:
        out = {key: value / max(self.tokens, 1.0) for key, value in self.sums.items()}
        self.__init__()
        return out


def ppo_loss(settings: PpoSettings, stats: UpdateStats
             ) -> Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """The Trainer's loss: clipped policy loss + vf_coef · clipped value loss − entropy_coef ·
    entropy, summed over reply tokens, and their number."""
    s = settings

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits, values = model(batch["input_ids"], values=True)
        logp_all = F.log_softmax(logits.float() / s.temperature, dim=-1)
        logp = logp_all.gather(-1, batch["labels"][..., None]).squeeze(-1)
        mask, advantages, returns, old_values = batch["mask"], batch["advantages"], batch["returns"], batch["values"]
        ratio = torch.exp(logp - batch["logps"])
        policy = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - s.clip, 1 + s.clip))
        values = values.float()
        clipped = old_values + (values - old_values).clamp(-s.value_clip, s.value_clip)
        value = 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        total = ((policy + s.vf_coef * value - s.entropy_coef * entropy) * mask).sum()
        with torch.no_grad():
            log_ratio = logp - batch["logps"]
            stats.add(float(mask.sum()), policy_loss=float((policy * mask).sum()),
                      value_loss=float((value * mask).sum()), entropy=float((entropy * mask).sum()),
                      clip_frac=float((((ratio - 1).abs() > s.clip).float() * mask).sum()),
                      approx_kl=float((((ratio - 1) - log_ratio) * mask).sum()))
        return total, mask.sum()
    return loss


# -- held-out prompts ----------------------------------------------------------------------------

@torch.no_grad()
def held_out(policy: nn.Module, reference: nn.Module, scorer: RewardScorer, tokenizer: Tokenizer,
             prompts: list[list[dict]], settings: PpoSettings, *, seed: int, chunk: int,
             dtype: torch.dtype) -> dict[str, float]:
    """The reward model's mean score of the policy's sampled replies to held-out prompts (the same
    seeds at every evaluation, so only the policy changes), and their KL to the reference in nats
    per reply: Σ over the reply's positions of the exact KL between the two next-token
    distributions there (never negative, unlike the sampled log-ratio the rollouts are penalised by)."""
    ids = [tokenizer.encode_chat(p, add_generation_prompt=True) for p in prompts]
    seeds = np.random.default_rng([seed, 2]).integers(0, 2 ** 62, len(ids))
    replies = sample_replies(policy, tokenizer, ids, settings, seeds)
    texts = [tokenizer.decode([t for t in r if t != tokenizer.end_id]) for r in replies]
    scores = torch.tensor(scorer.score(prompts, texts))
    seqs = Sequences.of(ids, replies, tokenizer.pad_id)
    kl = forward_kl(policy, reference, seqs, settings.temperature, chunk, dtype)
    return {"val_reward": float(scores.mean()), "val_kl": float(kl.mean()),
            "val_reply_tokens": float(seqs.mask.sum(1).mean())}


@torch.no_grad()
def forward_kl(policy: nn.Module, reference: nn.Module, seqs: Sequences, temperature: float, chunk: int,
               dtype: torch.dtype) -> torch.Tensor:
    """Σ over each reply's positions of KL(π(·|s_t) ‖ ref(·|s_t)), summed over the vocabulary: (B,)."""
    device = next(policy.parameters()).device
    out = []
    for start in range(0, len(seqs.input_ids), chunk):
        ids = seqs.input_ids[start:start + chunk].to(device)
        with autocast(dtype, device):
            mine = F.log_softmax(policy(ids).float() / temperature, dim=-1)
            theirs = F.log_softmax(reference(ids).float() / temperature, dim=-1)
        per_position = (mine.exp() * (mine - theirs)).sum(-1).cpu()
        out.append((per_position * seqs.mask[start:start + chunk]).sum(1))
    return torch.cat(out)


# -- the run -------------------------------------------------------------------------------------

def _reward_model(ctx: Context) -> tuple[Path, RewardScorer]:
    """The reward model named by ppo.reward, refused in one line unless it is a reward model that
    reads this policy's tokens."""
    name = ctx.recipe.ppo.reward
    folder = ctx.home.existing(ctx.home.model_dir(name), "reward model")
    if not (folder / HEAD_FILE).is_file():
        raise QuarkError(f"--reward {name!r} is not a reward model (no {HEAD_FILE} in {folder}; train one with "
                         "quark finetune reward)")
    if load_tokenizer(folder).model_bytes != ctx.tokenizer.model_bytes:
        raise QuarkError(f"reward model {name!r} and policy {ctx.base!r} use different tokenizers: the reward model "
                         "must score the policy's own tokens (train it from the same base or tokenizer)")
    rm_context = read_config(folder).max_seq_len
    if ctx.recipe.train.seq_len > rm_context:
        raise QuarkError(f"train.seq_len {ctx.recipe.train.seq_len} exceeds reward model {name!r}'s context of "
                         f"{rm_context} tokens")
    return folder, RewardScorer.load(folder, device=ctx.env.device)


def _prompts(ctx: Context, path: Path, limit: int) -> tuple[list[list[dict]], int]:
    """The prompts of `path` that leave room for a whole reply in train.seq_len (others are left out and counted)."""
    room = ctx.recipe.train.seq_len - ctx.recipe.ppo.max_new_tokens - 1
    found = read_prompts(path)
    kept = [p for p in found if len(ctx.tokenizer.encode_chat(p, add_generation_prompt=True)) <= room]
    if not kept:
        raise QuarkError(f"{path}: no prompt leaves room for ppo.max_new_tokens {ctx.recipe.ppo.max_new_tokens} in "
                         f"train.seq_len {ctx.recipe.train.seq_len} ({len(found)} left out)")
    return kept[:limit] if limit else kept, len(found) - len(kept)


def _load_policy(ctx: Context) -> tuple[ActorCritic, Callable[[Path, Path], None]]:
    """The ActorCritic to train (LoRA adapters injected when asked; the value head trains either
    way) and how its final checkpoint is published, value head included."""
    model = ActorCritic.assemble(load_model(ctx.base_folder))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in ActorCritic(ctx.config).state_dict().items()}
    if not ctx.recipe.lora.enabled:
        def publish(step: Path, folder: Path) -> None:
            publish_with_head(ctx, step, folder, shapes, _HEAD, VALUE_HEAD_FILE, {"value_head": VALUE_HEAD_FILE},
                              "quark-value-head")
        return model, publish
    model = add_lora(model, ctx.recipe.lora, ctx.base).get_base_model()
    model.value_head.requires_grad_(True)
    adapter = publish_adapter(ctx)

    def publish_lora(step: Path, folder: Path) -> None:
        adapter(step, folder)
        weights = load_state(step / "model.safetensors")
        save_file({k[len(_HEAD):]: weights[k].contiguous() for k in weights if k.startswith(_HEAD)},
                  str(folder / VALUE_HEAD_FILE), metadata={"format": "pt", "kind": "quark-value-head"})
    return model, publish_lora


def build(ctx: Context) -> Job:
    t, s = ctx.recipe.train, ctx.recipe.ppo
    if t.strategy == "fsdp" and ctx.env.world > 1:
        raise QuarkError("PPO generates its rollouts from the whole policy on every process: use train.strategy=ddp")
    if s.rollout_prompts % (t.micro_batch * t.grad_accum * ctx.env.world):
        raise QuarkError(f"ppo.rollout_prompts {s.rollout_prompts} must be a multiple of train.micro_batch × "
                         f"grad_accum × processes ({t.micro_batch * t.grad_accum * ctx.env.world})")
    rm_folder, scorer = _reward_model(ctx)
    prompts, skipped = _prompts(ctx, ctx.data.train, 0)
    model, publish = _load_policy(ctx)
    model.to(ctx.env.device)
    reference = load_model(ctx.base_folder, device=ctx.env.device).eval().requires_grad_(False)
    dtype = compute_dtype(t, ctx.env.device)
    train = Rollouts(model, reference, scorer, ctx.tokenizer, prompts, s, seed=t.seed, chunk=t.micro_batch,
                     dtype=dtype)
    stats = UpdateStats()
    info: dict[str, Any] = {"reward_model": s.reward, "train_prompts": len(prompts), "train_skipped": skipped,
                            "kl_coef": s.kl_coef}
    on_eval = None
    if ctx.data.val is not None and s.eval_prompts:
        val, val_skipped = _prompts(ctx, ctx.data.val, s.eval_prompts)
        check = lambda policy: held_out(policy, reference, scorer, ctx.tokenizer, val, s, seed=t.seed,  # noqa: E731
                                        chunk=t.micro_batch, dtype=dtype)
        start = check(model)
        info.update(val_prompts=len(val), val_skipped=val_skipped, start_val_reward=start["val_reward"],
                    start_val_kl=start["val_kl"], start_val_reply_tokens=start["val_reply_tokens"])
        on_eval = check

    def step_fields() -> dict[str, float]:  # the first five are the progress bar's (trainer.BAR_FIELDS)
        update = stats.drain()
        shown = {"reward": train.stats["reward"], "kl": train.stats["kl"], "clip_frac": update.pop("clip_frac"),
                 "value_loss": update.pop("value_loss"), "entropy": update.pop("entropy")}
        return {**shown, **train.stats, **update}

    return Job(model, train, ppo_loss(s, stats), publish, on_eval=on_eval, info=info, step_fields=step_fields)


def ppo(home: Home, *, name: str, reward: str | None = None, **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune ppo`: the policy is the run's base model (`base`), the reward model `reward`;
    see quark.align.run.run for the other arguments."""
    overrides = [*kwargs.pop("overrides", [])]
    if kwargs.get("resume"):
        recorded = recorded_value(home, name, "ppo", "reward")
        if reward and recorded and recorded != reward:
            raise QuarkError(f"run {name!r} is scored by reward model {recorded!r}, not {reward!r}")
    else:
        if not kwargs.get("base") or not reward or not kwargs.get("data"):
            raise QuarkError("a new PPO run needs --policy, --reward and --data (or --resume to continue a run)")
        overrides.append(f"ppo.reward={reward}")
        kwargs["recipe"] = kwargs.get("recipe") or DEFAULT_RECIPE
    return run(home, "ppo", build, name=name, overrides=overrides, **kwargs)
