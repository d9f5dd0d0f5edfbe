"""Alignment recipes: the pretraining recipe format (one YAML section per dataclass, `--set`
overrides, every value typed) without a `model` section, since the network is the base model's
own, plus the sections a kind of run needs:

    sft:     optim, train, lora
    dpo:     optim, train, lora, dpo
    reward:  optim, train
    embed:   optim, train, embed      (quark.retrieval.contrastive)
    rerank:  optim, train, rerank     (quark.retrieval.reranker)
    distill: optim, train, distill  (quark.align.distill)
    ppo:     optim, train, lora, ppo  (quark.align.ppo)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from quark.errors import QuarkError
from quark.train.recipe import (
    OptimConfig,
    TrainConfig,
    check_loop,
    field_types,
    parse_sections,
    read_recipe,
    sections_dict,
)

# The projections a LoRA adapter may wrap: every Linear of a block. The embedding and lm_head are
# left alone (they are tied in most Quark models, and merging into one would change the other).
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """Low-rank adapters (peft) instead of a full fine-tune; `qlora` keeps the frozen base in
    4-bit NF4 (bitsandbytes, CUDA only)."""

    enabled: bool = False
    qlora: bool = False
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: str = "q_proj,k_proj,v_proj,o_proj"  # comma-separated, from LORA_MODULES

    @property
    def target_list(self) -> list[str]:
        return [t.strip() for t in self.targets.split(",") if t.strip()]


@dataclass
class DpoSettings:
    beta: float = 0.1  # strength of the implicit KL penalty towards the reference model


@dataclass
class EmbedSettings:
    """The contrastive embedding head: output width (0: the model's), InfoNCE temperature (the
    starting value when learned), BM25-mined hard negatives per pair, held-out pairs scored."""

    dim: int = 0
    temperature: float = 0.05
    learn_temperature: bool = True
    hard_negatives: int = 1
    eval_pairs: int = 256


@dataclass
class RerankSettings:
    """The reranker (grounding head): per question, a BM25-mined hard negative and a corrupted twin
    of the supported passage are scored against it (listwise softmax)."""

    hard_negatives: int = 1
    corrupted: int = 2
    eval_pairs: int = 256


@dataclass
class DistillSettings:
    """Knowledge distillation: `teacher` is the model folder whose logits the student matches;
    loss = alpha · next-token CE + (1 − alpha) · T² · KL(teacher_T ‖ student_T)."""

    teacher: str = ""
    alpha: float = 0.0
    temperature: float = 1.0


@dataclass
class PpoSettings:
    """PPO from a reward model (quark.align.ppo). Each rollout batch samples one reply to each of
    `rollout_prompts` prompts from the policy, scores it with `reward`, and is then trained on for
    `epochs` passes in minibatches of train.micro_batch × grad_accum replies (one optimizer step
    each). The per-token reward is −kl_coef · (log π − log ref), plus the reward model's score on
    the reply's last token; GAE(gamma, lam) over the value head gives the advantages."""

    reward: str = ""            # the reward model's name (--reward)
    rollout_prompts: int = 16   # prompts (replies) per rollout batch
    epochs: int = 2             # passes over each rollout batch
    max_new_tokens: int = 32    # reply budget per rollout
    temperature: float = 1.0    # sampling temperature; log-probabilities are of the same tempered policy
    kl_coef: float = 0.05       # per-token KL penalty towards the reference (the starting policy)
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2           # policy ratio clip
    value_clip: float = 0.2     # value change clip around the rollout's values
    vf_coef: float = 0.1        # weight of the value loss
    entropy_coef: float = 0.0   # entropy bonus (0: reported, not trained on)
    whiten: bool = True         # normalise advantages over each rollout batch
    eval_prompts: int = 32      # held-out prompts scored at each evaluation


@dataclass
class AlignRecipe:
    kind: str
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    dpo: DpoSettings = field(default_factory=DpoSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    distill: DistillSettings = field(default_factory=DistillSettings)
    ppo: PpoSettings = field(default_factory=PpoSettings)

    def to_dict(self) -> dict[str, Any]:
        return sections_dict(self, SECTIONS[self.kind])

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_CLASSES = {"optim": OptimConfig, "train": TrainConfig, "lora": LoraSettings, "dpo": DpoSettings,
            "embed": EmbedSettings, "rerank": RerankSettings, "distill": DistillSettings, "ppo": PpoSettings}
SECTIONS: dict[str, tuple[str, ...]] = {"sft": ("optim", "train", "lora"), "dpo": ("optim", "train", "lora", "dpo"),
                                        "reward": ("optim", "train"), "embed": ("optim", "train", "embed"),
                                        "rerank": ("optim", "train", "rerank"),
                                        "distill": ("optim", "train", "distill"),
                                        "ppo": ("optim", "train", "lora", "ppo")}


def load_align_recipe(kind: str, name_or_file: str, overrides: list[str] = ()) -> AlignRecipe:
    """A shipped recipe (sft, dpo, reward) or a YAML file, for a run of `kind`."""
    data, where = read_recipe(name_or_file)
    if isinstance(data, dict) and "model" in data:
        raise QuarkError(f"{where}: a fine-tuning recipe has no model section: the network is the base model's "
                         "(--model); remove it")
    sections = {s: field_types(_CLASSES[s]) for s in SECTIONS[kind]}
    values = parse_sections(data, where, list(overrides), sections)
    recipe = AlignRecipe(kind, **{s: _CLASSES[s](**values[s]) for s in SECTIONS[kind]})
    check_loop(recipe.optim, recipe.train, where)
    lora = recipe.lora
    if lora.qlora and not lora.enabled:
        lora.enabled = True  # QLoRA is LoRA on a quantized base
    unknown = [t for t in lora.target_list if t not in LORA_MODULES]
    if unknown or not lora.target_list:
        raise QuarkError(f"{where}: lora.targets {lora.targets!r}: expected a comma-separated list from "
                         f"{', '.join(LORA_MODULES)}")
    if lora.rank <= 0 or lora.alpha <= 0 or not 0 <= lora.dropout < 1:
        raise QuarkError(f"{where}: lora.rank and lora.alpha must be positive and lora.dropout in [0, 1)")
    if recipe.embed.dim < 0 or recipe.embed.temperature <= 0 or recipe.embed.hard_negatives < 0:
        raise QuarkError(f"{where}: embed.dim must be >= 0, embed.temperature > 0, embed.hard_negatives >= 0")
    rerank = recipe.rerank
    if rerank.hard_negatives < 0 or rerank.corrupted < 0 or not rerank.hard_negatives + rerank.corrupted:
        raise QuarkError(f"{where}: rerank.hard_negatives and rerank.corrupted must be >= 0, and not both 0")
    d = recipe.distill
    if not 0.0 <= d.alpha <= 1.0 or not 0.0 < d.temperature < float("inf"):
        raise QuarkError(f"{where}: distill.alpha must be in [0, 1] and distill.temperature positive, got "
                         f"{d.alpha} and {d.temperature}")
    if kind == "distill" and not d.teacher:
        raise QuarkError(f"{where}: a distillation run needs a teacher model (--teacher or distill.teacher)")
    check_ppo(recipe, kind, where)
    if recipe.dpo.beta <= 0:
        raise QuarkError(f"{where}: dpo.beta must be positive, got {recipe.dpo.beta}")
    return recipe


def check_ppo(recipe: AlignRecipe, kind: str, where: str) -> None:
    """PPO's settings in range, and its loop shaped so that every checkpoint falls between rollout
    batches (the rollout buffer is never saved: a resumed run regenerates the next batch from the
    restored weights, exactly as the uninterrupted run generated it)."""
    p, t = recipe.ppo, recipe.train
    if kind != "ppo":
        return
    if not p.reward:
        raise QuarkError(f"{where}: a PPO run needs a reward model (--reward or ppo.reward)")
    if recipe.lora.qlora:
        raise QuarkError(f"{where}: PPO trains a LoRA adapter (--lora) on a full-precision base; --qlora is not "
                         "supported")
    checks = [(p.rollout_prompts >= 1 and p.epochs >= 1 and p.max_new_tokens >= 1,
               "ppo.rollout_prompts, ppo.epochs and ppo.max_new_tokens must be at least 1"),
              (p.temperature > 0, "ppo.temperature must be positive (PPO samples its rollouts)"),
              (p.kl_coef >= 0 and p.vf_coef >= 0 and p.entropy_coef >= 0,
               "ppo.kl_coef, ppo.vf_coef and ppo.entropy_coef must be >= 0"),
              (0 <= p.gamma <= 1 and 0 <= p.lam <= 1, "ppo.gamma and ppo.lam must be in [0, 1]"),
              (p.clip > 0 and p.value_clip > 0, "ppo.clip and ppo.value_clip must be positive"),
              (p.eval_prompts >= 0, "ppo.eval_prompts must be >= 0"),
              (p.max_new_tokens < t.seq_len, f"ppo.max_new_tokens {p.max_new_tokens} leaves no room for a prompt "
                                             f"in train.seq_len {t.seq_len}")]
    for ok, message in checks:
        if not ok:
            raise QuarkError(f"{where}: {message}")
    minibatch = t.micro_batch * t.grad_accum
    if p.rollout_prompts % minibatch:
        raise QuarkError(f"{where}: ppo.rollout_prompts {p.rollout_prompts} must be a multiple of the minibatch "
                         f"(train.micro_batch × train.grad_accum = {minibatch})")
    per_rollout = p.rollout_prompts // minibatch * p.epochs
    for key, value in (("train.max_steps", t.max_steps), ("train.save_every", t.save_every)):
        if value % per_rollout:
            raise QuarkError(f"{where}: {key} {value} must be a multiple of the {per_rollout} optimizer steps of "
                             f"one rollout batch (rollout_prompts / minibatch × epochs), so every checkpoint "
                             "falls between rollouts")
