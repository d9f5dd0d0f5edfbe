"""Alignment recipes: the pretraining recipe format (one YAML section per dataclass, `--set`
overrides, every value typed) without a `model` section, since the network is the base model's
own, plus the sections a kind of run needs:

    sft:     optim, train, lora
    dpo:     optim, train, lora, dpo
    reward:  optim, train
    embed:   optim, train, embed      (quark.retrieval.contrastive)
    rerank:  optim, train, rerank     (quark.retrieval.reranker)
    distill: optim, train, distill  (quark.align.distill)
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
class AlignRecipe:
    kind: str
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    dpo: DpoSettings = field(default_factory=DpoSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    distill: DistillSettings = field(default_factory=DistillSettings)

    def to_dict(self) -> dict[str, Any]:
        return sections_dict(self, SECTIONS[self.kind])

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_CLASSES = {"optim": OptimConfig, "train": TrainConfig, "lora": LoraSettings, "dpo": DpoSettings,
            "embed": EmbedSettings, "rerank": RerankSettings, "distill": DistillSettings}
SECTIONS: dict[str, tuple[str, ...]] = {"sft": ("optim", "train", "lora"), "dpo": ("optim", "train", "lora", "dpo"),
                                        "reward": ("optim", "train"), "embed": ("optim", "train", "embed"),
                                        "rerank": ("optim", "train", "rerank"),
                                        "distill": ("optim", "train", "distill")}


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
    if recipe.dpo.beta <= 0:
        raise QuarkError(f"{where}: dpo.beta must be positive, got {recipe.dpo.beta}")
    return recipe
