"""Training recipes: plain YAML whose sections mirror one dataclass per concern (litgpt style).

    model:  preset: tiny        # a quark.models.llm.PRESETS name, then any LLMConfig field to override
            n_layer: 2
    optim:  lr, betas, weight_decay, grad_clip, warmup, schedule, min_lr_ratio, decay_fraction
    train:  micro_batch, grad_accum, seq_len, max_steps, eval_every, save_every, …

Every value is typed by its dataclass field, from the YAML file and from `--set section.key=value`
alike, so an unknown key or a wrong type is a one-line QuarkError naming the key, before any work
starts. A recipe is found by name among the shipped ones (quark.recipes) or read from a file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from quark import recipes
from quark.errors import QuarkError
from quark.models.llm import PRESETS, LLMConfig
from quark.train.loggers import parse_loggers

Schedule = Literal["cosine", "wsd"]
Strategy = Literal["ddp", "fsdp"]
DType = Literal["auto", "float32", "bfloat16"]


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping (the norm is still logged)
    warmup: int = 100  # steps of linear warm-up from 0
    schedule: Schedule = "cosine"  # cosine: decay after warm-up; wsd: warm-up, stable, decay
    min_lr_ratio: float = 0.1  # final lr = lr * min_lr_ratio
    decay_fraction: float = 0.2  # wsd only: the last fraction of steps that decays

    def lr_multiplier(self, step: int, max_steps: int) -> float:
        """The factor on `lr` at optimizer step `step` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "cosine":
            progress = min(1.0, (step - self.warmup) / max(1, max_steps - self.warmup))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        decay_start = max(self.warmup, int(max_steps * (1 - self.decay_fraction)))
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
        return 1.0 - (1 - self.min_lr_ratio) * progress


@dataclass
class TrainConfig:
    """The loop: batch geometry, length, cadence of eval/checkpoints, device and parallelism."""

    micro_batch: int = 8  # windows per forward, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    seq_len: int = 256
    max_steps: int = 1000
    eval_every: int = 100  # validation loss and a greedy sample; 0 disables
    eval_windows: int = 32  # validation windows in all (split over processes)
    sample_tokens: int = 16  # greedy tokens generated at each evaluation; 0 disables
    save_every: int = 200  # checkpoint cadence in steps (the last step is always saved)
    keep_last: int = 3  # checkpoints kept in runs/<name>/
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: DType = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the model
    activation_checkpointing: bool = False
    strategy: Strategy = "ddp"  # under torchrun: ddp replicates, fsdp shards (FSDP2)
    loggers: str = ""  # beside metrics.jsonl, comma-separated: csv, tensorboard, wandb (quark.train.loggers)


@dataclass
class ModelRecipe:
    """A preset of quark.models.llm.PRESETS plus per-field overrides of its LLMConfig.

    vocab_size is not a recipe key: it always comes from the token set's tokenizer.
    """

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, vocab_size: int) -> LLMConfig:
        base = PRESETS[self.preset].to_dict()
        if "n_embd" in self.overrides and "intermediate_size" not in self.overrides:
            base["intermediate_size"] = 0  # re-derive SwiGLU's width from the new hidden size
        try:
            return LLMConfig.from_dict({**base, **self.overrides, "vocab_size": vocab_size})
        except ValueError as exc:
            raise QuarkError(f"recipe model section: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.overrides}


@dataclass
class Recipe:
    model: ModelRecipe = field(default_factory=ModelRecipe)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        optim = dataclasses.asdict(self.optim)
        optim["betas"] = list(optim["betas"])
        return {"model": self.model.to_dict(), "optim": optim, "train": dataclasses.asdict(self.train)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def global_batch_per_process(self) -> int:
        return self.train.micro_batch * self.train.grad_accum


def sections_dict(recipe: Any, sections: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The named dataclass sections of a recipe as plain YAML-ready dicts (tuples become lists)."""
    out = {}
    for section in sections:
        values = dataclasses.asdict(getattr(recipe, section))
        out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields and their resolved types: one recipe section's keys."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_MODEL_TYPES = {"preset": str, **{k: v for k, v in field_types(LLMConfig).items() if k != "vocab_size"}}
_SECTIONS: dict[str, dict[str, Any]] = {"model": _MODEL_TYPES, "optim": field_types(OptimConfig),
                                        "train": field_types(TrainConfig)}

_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(value: Any, kind: Any) -> Any:
    """`value` as type `kind`, or ValueError. Strings are parsed (they come from --set, and PyYAML
    reads `3e-4` without a dot as a string); other values must already have the right type."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ValueError(f"expects one of {', '.join(typing.get_args(kind))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = yaml.safe_load(value if value.lstrip().startswith("[") else f"[{value}]")
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"expects {len(args)} comma-separated values")
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        return _coerce(value, next(a for a in typing.get_args(kind) if a is not type(None)))
    if kind is bool:
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if not isinstance(value, bool):
            raise ValueError("expects true or false")
        return value
    if kind in (int, float):
        expects = "expects an integer" if kind is int else "expects a number"
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                raise ValueError(expects) from None
        # bool is an int subclass but never a count or a rate; an int is a fine float, not vice versa
        if isinstance(value, bool) or not isinstance(value, (int,) if kind is int else (int, float)):
            raise ValueError(expects)
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError("expects a string")
        return value
    raise TypeError(f"unsupported recipe field type {kind!r}")


def _set(values: dict[str, dict[str, Any]], dotted: str, value: Any, where: str,
         sections: dict[str, dict[str, Any]]) -> None:
    section, _, key = dotted.partition(".")
    if section not in sections:
        raise QuarkError(f"{where}: unknown recipe section {section!r} in {dotted!r} "
                         f"(sections: {', '.join(sections)})")
    if key not in sections[section]:
        hint = " (it comes from the token set's tokenizer)" if dotted == "model.vocab_size" else ""
        raise QuarkError(f"{where}: unknown recipe key {dotted!r}{hint}; known {section} keys: "
                         f"{', '.join(sections[section])}")
    try:
        values[section][key] = _coerce(value, sections[section][key])
    except ValueError as exc:
        raise QuarkError(f"{where}: {dotted} {exc}, got {value!r}") from None


def _build(values: dict[str, dict[str, Any]], where: str) -> Recipe:
    model = dict(values["model"])
    preset = model.pop("preset", "tiny")
    if preset not in PRESETS:
        raise QuarkError(f"{where}: model.preset {preset!r} is not a preset (presets: {', '.join(PRESETS)})")
    recipe = Recipe(model=ModelRecipe(preset, model), optim=OptimConfig(**values["optim"]),
                    train=TrainConfig(**values["train"]))
    _check(recipe, where)
    return recipe


def _check(recipe: Recipe, where: str) -> None:
    """Values that type-check but cannot train."""
    check_loop(recipe.optim, recipe.train, where)
    max_len = recipe.model.overrides.get("max_seq_len", PRESETS[recipe.model.preset].max_seq_len)
    if recipe.train.seq_len > max_len:
        raise QuarkError(f"{where}: train.seq_len {recipe.train.seq_len} exceeds model.max_seq_len {max_len}")


def check_loop(o: OptimConfig, t: TrainConfig, where: str) -> None:
    """optim/train values that type-check but cannot train (any recipe kind)."""
    positive = {"train.micro_batch": t.micro_batch, "train.grad_accum": t.grad_accum, "train.seq_len": t.seq_len,
                "train.max_steps": t.max_steps, "train.keep_last": t.keep_last, "optim.lr": o.lr}
    non_negative = {"train.eval_every": t.eval_every, "train.save_every": t.save_every,
                    "train.eval_windows": t.eval_windows, "train.sample_tokens": t.sample_tokens,
                    "optim.warmup": o.warmup, "optim.grad_clip": o.grad_clip, "optim.weight_decay": o.weight_decay}
    for key, value in positive.items():
        if value <= 0:
            raise QuarkError(f"{where}: {key} must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise QuarkError(f"{where}: {key} must not be negative, got {value}")
    parse_loggers(t.loggers, f"{where}: train.loggers")
    if not 0 <= o.min_lr_ratio <= 1 or not 0 <= o.decay_fraction <= 1:
        raise QuarkError(f"{where}: optim.min_lr_ratio and optim.decay_fraction must lie in [0, 1]")


def parse_sections(data: Any, where: str, overrides: list[str], sections: dict[str, dict[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Typed values per section from a parsed YAML document plus `section.key=value` overrides;
    `sections` maps each section to its keys' types (see field_types)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise QuarkError(f"{where}: a recipe is a mapping of sections ({', '.join(sections)})")
    values: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for section, body in data.items():
        if section not in sections:
            raise QuarkError(f"{where}: unknown recipe section {section!r} (sections: {', '.join(sections)})")
        if not isinstance(body, dict):
            raise QuarkError(f"{where}: recipe section {section!r} must be a mapping of keys to values")
        for key, value in body.items():
            _set(values, f"{section}.{key}", value, where, sections)
    for item in overrides:
        dotted, eq, raw = item.partition("=")
        if not eq or "." not in dotted:
            raise QuarkError(f"--set {item!r}: expected section.key=value (e.g. train.max_steps=200)")
        _set(values, dotted.strip(), raw.strip(), f"--set {item}", sections)
    return values


def parse_recipe(data: Any, where: str, overrides: list[str] = ()) -> Recipe:
    """A Recipe from a parsed YAML document plus `section.key=value` overrides."""
    return _build(parse_sections(data, where, list(overrides), _SECTIONS), where)


def read_recipe(name_or_file: str | Path) -> tuple[Any, str]:
    """The parsed YAML of a shipped recipe (by name) or a file, and where it came from."""
    path = recipes.path(str(name_or_file)) if "/" not in str(name_or_file) else None
    path = path or Path(name_or_file)
    if not path.is_file():
        raise QuarkError(f"unknown recipe {str(name_or_file)!r}: not a file, and not one of the shipped "
                         f"recipes ({', '.join(recipes.names())})")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
    except yaml.YAMLError as exc:
        raise QuarkError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_recipe(name_or_file: str | Path, overrides: list[str] = ()) -> Recipe:
    """A shipped pretraining recipe by name (tiny-cpu, small-gpu, blueprint-700m) or a YAML file."""
    data, where = read_recipe(name_or_file)
    return parse_recipe(data, where, overrides)
