"""Image recipes: the pretraining recipe format (one YAML section per dataclass, `--set` overrides,
every value typed, unknown keys refused) with the sections a diffusion run needs:

    model:      the UNet's shape (quark.models.diffusion.UNetShape): size, channels, attention, …
    diffusion:  noise schedule, min-SNR-γ, caption dropout for guidance, EMA, sampling defaults
    data:       the built-in shapes set's vocabulary and size (ignored for --data FOLDER)
    optim, train: as for pretraining (train.seq_len and train.sample_tokens are unused)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from quark.errors import QuarkError
from quark.image.shapes import Vocabulary
from quark.models.diffusion import SAMPLERS, UNetShape
from quark.train.recipe import (
    OptimConfig,
    TrainConfig,
    check_loop,
    field_types,
    parse_sections,
    read_recipe,
    sections_dict,
)


@dataclass
class DiffusionSettings:
    """How the denoiser is trained, and how it samples by default."""

    timesteps: int = 1000
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"  # what the UNet predicts
    snr_gamma: float = 5.0  # min-SNR-γ loss weighting (Hang et al. 2023); 0 disables it
    caption_dropout: float = 0.1  # captions replaced by the empty one: the unconditional branch of guidance
    ema_decay: float = 0.999  # the published weights are this EMA (warmed up as (1+n)/(10+n)); 0 disables it
    sampler: str = "ddim"  # defaults for `quark image generate`: ddim | dpm
    steps: int = 25
    guidance: float = 3.0


@dataclass
class ShapeData:
    """The built-in shapes set (`--builtin shapes`)."""

    colours: str = "red,green,blue,yellow,purple"
    shapes: str = "circle,square,triangle"
    backgrounds: str = "white,black,gray"
    images: int = 4096  # training scenes drawn (training cycles over them in a fresh order each epoch)
    heldout_images: int = 64  # scenes of held-out combinations for the validation loss

    def vocabulary(self, where: str = "recipe data section") -> Vocabulary:
        return Vocabulary.parse(self.colours, self.shapes, self.backgrounds, where)


@dataclass
class ImageRecipe:
    model: UNetShape = field(default_factory=UNetShape)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    data: ShapeData = field(default_factory=ShapeData)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return sections_dict(self, _CLASSES)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_CLASSES = {"model": UNetShape, "diffusion": DiffusionSettings, "data": ShapeData, "optim": OptimConfig,
            "train": TrainConfig}


def load_image_recipe(name_or_file: str, overrides: list[str] = ()) -> ImageRecipe:
    """A shipped recipe (image-tiny, image-gpu) or a YAML file."""
    data, where = read_recipe(name_or_file)
    sections = {s: field_types(cls) for s, cls in _CLASSES.items()}
    values = parse_sections(data, where, list(overrides), sections)
    recipe = ImageRecipe(**{s: cls(**values[s]) for s, cls in _CLASSES.items()})
    check(recipe, where)
    return recipe


def check(recipe: ImageRecipe, where: str) -> None:
    """Values that type-check but cannot train, as one line naming the key."""
    check_loop(recipe.optim, recipe.train, where)
    if recipe.train.strategy != "ddp":
        raise QuarkError(f"{where}: train.strategy {recipe.train.strategy!r}: image models train under ddp "
                         "(they are small enough to replicate)")
    m, d = recipe.model, recipe.diffusion
    try:
        widths, levels = m.widths, m.attention_levels
    except ValueError:
        raise QuarkError(f"{where}: model.channels and model.attention are comma-separated integers") from None
    if not widths or any(w <= 0 or w % m.norm_groups for w in widths):
        raise QuarkError(f"{where}: model.channels {m.channels!r} must be positive multiples of model.norm_groups "
                         f"({m.norm_groups})")
    if any(not 0 <= level < len(widths) for level in levels):
        raise QuarkError(f"{where}: model.attention {m.attention!r} names levels outside 0..{len(widths) - 1}")
    if any(w % m.head_dim for w in widths):
        raise QuarkError(f"{where}: model.head_dim {m.head_dim} must divide every width in model.channels")
    factor = 2 ** (len(widths) - 1)
    if m.size < 8 or m.size % factor:
        raise QuarkError(f"{where}: model.size {m.size} must be at least 8 and a multiple of {factor} "
                         f"(the UNet halves it {len(widths) - 1} times)")
    if m.text_max_tokens < 2 or m.cross_attention_dim <= 0 or m.layers_per_block <= 0:
        raise QuarkError(f"{where}: model.text_max_tokens must be at least 2, model.cross_attention_dim and "
                         "model.layers_per_block positive")
    if m.layout_channels < 0 or m.layout_grid < 1 or m.layout_hidden < 0:
        raise QuarkError(f"{where}: model.layout_channels and model.layout_hidden must not be negative, "
                         "model.layout_grid must be at least 1")
    if not 0 <= d.caption_dropout < 1 or not 0 <= d.ema_decay < 1 or d.snr_gamma < 0:
        raise QuarkError(f"{where}: diffusion.caption_dropout and diffusion.ema_decay must lie in [0, 1), "
                         "diffusion.snr_gamma must not be negative")
    if d.sampler not in SAMPLERS or d.steps <= 0 or d.guidance < 0 or d.timesteps < 2:
        raise QuarkError(f"{where}: diffusion.sampler must be one of {', '.join(SAMPLERS)}, diffusion.steps positive, "
                         "diffusion.guidance not negative, diffusion.timesteps at least 2")
    if recipe.data.images <= 0 or recipe.data.heldout_images < 0:
        raise QuarkError(f"{where}: data.images must be positive and data.heldout_images not negative")
    recipe.data.vocabulary(where)
