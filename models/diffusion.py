"""Quark's text-to-image model: a pixel-space diffusion pipeline built from diffusers components.

    QuarkImagePipeline (a diffusers DiffusionPipeline)
      text_encoder   QuarkTextEncoder: the frozen final hidden states of a Quark LLM (its own
                     tokenizer inside), so no CLIP and no hub weights
      unet           UNet2DConditionModel with cross-attention on those hidden states
                     (encoder_hid_proj maps the LLM's width onto the cross-attention width)
      layout         optional TextLayout: the pooled text mapped to a coarse spatial map that
                     enters the UNet as extra input channels (None: no such channels)
      scheduler      DDPMScheduler, the training noise schedule; sampling builds a DDIM or
                     DPM-Solver++ scheduler from its config
      safety_checker optional slot (diffusers' convention): None, or a callable
                     (images: np.ndarray [B,H,W,3] in [0,1]) -> (images, flags)

`save_pretrained(folder)` writes the diffusers layout (model_index.json, unet/, scheduler/) with
text_encoder/ as an ordinary Quark model folder (config.json, model.safetensors, tokenizer.model)
plus standardize.safetensors, so `from_pretrained(folder)` works offline from the folder alone.

The text states are standardized per feature (shift and scale fitted on the training captions'
tokens): a pretrained LM's final states share a large common offset (norm ~10 against ~0.7 between
colours on the shapes set), which the UNet's attention and the layout would otherwise have to
learn to look past.

Classifier-free guidance: the unconditional branch is the empty caption (BOS only), which is what
training substitutes when it drops a caption; a negative prompt takes its place when given.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import (
    ConfigMixin,
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    ModelMixin,
    UNet2DConditionModel,
)
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from PIL import Image
from safetensors.torch import load_file, save_file

from quark.modelfolder import load_model, load_tokenizer, read_config_json, save_model
from quark.models.llm import LLM
from quark.tokenizer import Tokenizer

SAMPLERS = ("ddim", "dpm")
MAX_TOKENS_KEY = "text_encoder_max_tokens"  # in text_encoder/config.json, beside the LLM's shape
STANDARDIZE_FILE = "standardize.safetensors"  # in text_encoder/: the states' per-feature shift and scale


@dataclass
class UNetShape:
    """The UNet's shape; a recipe's `model` section. `channels` lists each resolution level's width;
    `attention` says which levels (0 = full resolution) get cross-attention blocks."""

    size: int = 32
    channels: str = "32,64,64"
    attention: str = "1,2"
    layers_per_block: int = 1
    head_dim: int = 16
    cross_attention_dim: int = 64
    norm_groups: int = 8
    text_max_tokens: int = 48  # longest caption (in text-encoder tokens, BOS included)
    coordinates: bool = False  # two extra input channels holding each pixel's x and y (see denoise)
    # The time + pooled-text embedding scales and shifts each ResNet block's normalised features
    # (FiLM; diffusers' resnet_time_scale_shift="scale_shift") instead of only adding to them: a
    # multiplicative gate is what lets a global "at the top left" switch on features that know where.
    scale_shift: bool = False
    # Channels of a coarse map drawn from the pooled text (TextLayout) and fed in beside the pixels;
    # 0: none. Why: the pooled text otherwise reaches the UNet only as a per-channel bias or gate,
    # the same at every pixel, so "at the top left" has to be rebuilt from it inside the network.
    layout_channels: int = 0
    layout_grid: int = 8  # the map's cells per side before it is upsampled to the image size
    # Width of a hidden layer (SiLU) between the pooled text and the map; 0: one linear layer. Why: a
    # linear map adds one picture per word, so it can put a blob where "top left" says but cannot draw
    # "triangle" there; with the hidden layer the map can draw the silhouette itself.
    layout_hidden: int = 0

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.channels.split(",") if c.strip())

    @property
    def attention_levels(self) -> set[int]:
        return {int(c) for c in self.attention.split(",") if c.strip()}


def build_unet(shape: UNetShape, text_dim: int) -> UNet2DConditionModel:
    """A UNet2DConditionModel in pixel space: 3 channels out; in, the 3 colour channels, then the 2
    coordinate channels and the layout channels when the shape has them (see denoise)."""
    widths, attn = shape.widths, shape.attention_levels
    down = tuple("CrossAttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(len(widths)))
    up = tuple("CrossAttnUpBlock2D" if len(widths) - 1 - i in attn else "UpBlock2D" for i in range(len(widths)))
    return UNet2DConditionModel(
        sample_size=shape.size, in_channels=3 + 2 * shape.coordinates + shape.layout_channels, out_channels=3,
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DCrossAttn", block_out_channels=widths,
        layers_per_block=shape.layers_per_block,
        resnet_time_scale_shift="scale_shift" if shape.scale_shift else "default",
        norm_num_groups=shape.norm_groups, cross_attention_dim=shape.cross_attention_dim,
        attention_head_dim=shape.head_dim, encoder_hid_dim=text_dim, encoder_hid_dim_type="text_proj",
        class_embed_type="projection", projection_class_embeddings_input_dim=text_dim)


def build_layout(shape: UNetShape, text_dim: int) -> TextLayout | None:
    """The shape's TextLayout, or None when it has no layout channels."""
    if not shape.layout_channels:
        return None
    return TextLayout(text_dim=text_dim, channels=shape.layout_channels, grid=shape.layout_grid,
                      hidden=shape.layout_hidden)


class TextLayout(ModelMixin, ConfigMixin):
    """Pooled text → a [channels, grid, grid] map, upsampled bilinearly to the sample's size.

    With `hidden` 0, one linear layer: each text feature adds its own coarse picture, so "top left"
    can paint the top-left cells and "large" widen them, and an unseen combination of words sums
    pictures it has seen. With a hidden layer the words can interact, so the map can hold the
    shape's silhouette at its place. Trained with the UNet, saved as the pipeline's `layout`
    component. Small initial output weights keep the UNet's first steps those of a UNet without it."""

    @register_to_config
    def __init__(self, text_dim: int, channels: int = 4, grid: int = 8, hidden: int = 0) -> None:
        super().__init__()
        self.hidden_layer = nn.Sequential(nn.Linear(text_dim, hidden), nn.SiLU()) if hidden else nn.Identity()
        self.project = nn.Linear(hidden or text_dim, channels * grid * grid)
        nn.init.normal_(self.project.weight, std=0.02)
        nn.init.zeros_(self.project.bias)

    def forward(self, pooled: torch.Tensor, height: int, width: int) -> torch.Tensor:
        channels, grid = self.config.channels, self.config.grid
        coarse = self.project(self.hidden_layer(pooled)).view(pooled.shape[0], channels, grid, grid)
        return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def with_coordinates(sample: torch.Tensor) -> torch.Tensor:
    """`sample` [B, C, H, W] with two channels appended: x and y of each pixel centre in [-1, 1].

    Why: convolutions are translation-equivariant and the pooled text enters as a per-channel bias,
    so without these a global "at the top left" has nothing to say *where* to draw (CoordConv,
    Liu et al. 2018). Computed from the size, so any sampling size gets its own grid."""
    b, _, h, w = sample.shape
    ys = (torch.arange(h, device=sample.device, dtype=sample.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=sample.device, dtype=sample.dtype) + 0.5) * (2.0 / w) - 1.0
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])
    return torch.cat([sample, grid.expand(b, 2, h, w)], dim=1)


def denoise(unet: UNet2DConditionModel, sample: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
            mask: torch.Tensor, layout: TextLayout | None = None) -> torch.Tensor:
    """The UNet's prediction for noisy `sample` at `timesteps` given text states (training and
    sampling both call this). The text conditions twice: every token through cross-attention,
    and their mean (over the mask) added to the timestep embedding, as Imagen adds its pooled
    text embedding, which steers every ResNet block globally (colour, size) from the first steps;
    with a `layout`, the mean also draws its map beside the pixels. A UNet built with coordinate
    channels (two more input channels than the pixels and the layout fill) gets them here."""
    weights = mask.to(text.dtype)[..., None]
    pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    layout_channels = layout.config.channels if layout is not None else 0
    if unet.config.in_channels == sample.shape[1] + 2 + layout_channels:
        sample = with_coordinates(sample)
    if layout is not None:
        sample = torch.cat([sample, layout(pooled, *sample.shape[-2:]).to(sample.dtype)], dim=1)
    return unet(sample, timesteps, encoder_hidden_states=text, encoder_attention_mask=mask, class_labels=pooled).sample


def training_scheduler(timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                       prediction_type: str = "epsilon") -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule=beta_schedule, prediction_type=prediction_type,
                         clip_sample=True, clip_sample_range=1.0)


def sampling_scheduler(config: Any, sampler: str) -> DDIMScheduler | DPMSolverMultistepScheduler:
    """A deterministic sampler on the training schedule: DDIM (eta 0) or DPM-Solver++ (2nd order).

    Only the schedule's own values are carried over (a loaded config marks the values it left at
    their defaults, which from_config would then take from the *sampler's* defaults, so a saved
    and a fresh pipeline would step differently); the spacing is set here: "trailing" starts
    from pure noise at t = T-1 however few the steps."""
    config = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    spacing = {"timestep_spacing": "trailing", "steps_offset": 0}
    if sampler == "ddim":
        return DDIMScheduler.from_config(config, clip_sample=True, set_alpha_to_one=True, **spacing)
    if sampler == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       thresholding=False, lower_order_final=True, **spacing)
    raise ValueError(f"unknown sampler {sampler!r} (expected one of {', '.join(SAMPLERS)})")


class QuarkTextEncoder(ModelMixin):
    """A frozen Quark LLM read for its final normalised hidden states, with its own tokenizer.

    A ModelMixin so that DiffusionPipeline loads it as a component; its folder is a plain Quark
    model folder (quark.modelfolder), not diffusers' config + weights layout.
    """

    def __init__(self, llm: LLM, tokenizer: Tokenizer, max_tokens: int = 32) -> None:
        super().__init__()
        self.llm = llm.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_tokens = min(max_tokens, llm.config.max_seq_len)
        self.register_buffer("shift", torch.zeros(llm.config.n_embd))
        self.register_buffer("scale", torch.ones(llm.config.n_embd))

    @property
    def hidden_size(self) -> int:
        return self.llm.config.n_embd

    def token_ids(self, text: str) -> list[int]:
        """BOS + the caption's tokens; the empty caption is BOS alone (the unconditional input)."""
        return [self.tokenizer.bos_id, *self.tokenizer.encode(text)]

    def too_long(self, text: str) -> int:
        """How many tokens `text` has beyond what the encoder reads (0 if it fits)."""
        return max(0, len(self.token_ids(text)) - self.max_tokens)

    @torch.no_grad()
    def fit_standardization(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold the per-feature mean and std of the real tokens of `hidden` [N, T, D] (states this
        encoder returned; `mask` [N, T]) into shift and scale, so that encode returns such states
        standardized from now on. Returns (mean, std) [D]: a state encoded before the fit becomes
        what encode now returns as (state - mean) / std, so a cache need not be encoded again.
        Deterministic, so a resumed run fits the same values."""
        tokens = hidden[mask].double()
        if not len(tokens):  # nothing to fit on: leave the states as they are
            return torch.zeros(hidden.shape[-1]), torch.ones(hidden.shape[-1])
        std, mean = torch.std_mean(tokens, dim=0, correction=0)
        mean, std = mean.float(), std.clamp_min(1e-6).float()
        self.shift += self.scale * mean.to(self.shift.device)
        self.scale *= std.to(self.scale.device)
        return mean, std

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B, max_tokens, D] float32, standardized, zero on padding; mask [B, max_tokens]
        bool). Right padding, which the causal LLM never attends to; the mask keeps the UNet's
        cross-attention off it too. Callers refuse over-long texts first (see too_long): nothing
        is cut silently here."""
        device = self.llm.embed_tokens.weight.device
        ids = torch.full((len(texts), self.max_tokens), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros(len(texts), self.max_tokens, dtype=torch.bool)
        for row, text in enumerate(texts):
            tokens = self.token_ids(text)[:self.max_tokens]
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = True
        hidden = (self.llm(ids.to(device), return_hidden=True).float() - self.shift) / self.scale
        return hidden * mask[..., None].to(device), mask.to(device)

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> None:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            tokenizer_file = Path(scratch) / "tokenizer.model"
            tokenizer_file.write_bytes(self.tokenizer.model_bytes)
            save_model(folder, self.llm, tokenizer_file, extra_config={MAX_TOKENS_KEY: self.max_tokens})
        save_file({"shift": self.shift.cpu().contiguous(), "scale": self.scale.cpu().contiguous()},
                  str(folder / STANDARDIZE_FILE))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> QuarkTextEncoder:
        folder = Path(pretrained_model_name_or_path)
        if kwargs.get("subfolder"):
            folder = folder / kwargs["subfolder"]
        max_tokens = read_config_json(folder, "text encoder").get(MAX_TOKENS_KEY, UNetShape.text_max_tokens)
        encoder = cls(load_model(folder), load_tokenizer(folder), max_tokens)
        if (folder / STANDARDIZE_FILE).is_file():  # absent in pipelines saved before standardization
            statistics = load_file(str(folder / STANDARDIZE_FILE))
            encoder.shift.copy_(statistics["shift"])
            encoder.scale.copy_(statistics["scale"])
        return encoder


@dataclass
class QuarkImageOutput(BaseOutput):
    """images: PIL images; nsfw_content_detected: one flag per image, or None without a checker."""

    images: list[Image.Image]
    nsfw_content_detected: list[bool] | None


class QuarkImagePipeline(DiffusionPipeline):
    """Text → image in pixel space. See the module docstring for the components."""

    model_cpu_offload_seq = "text_encoder->layout->unet"
    _optional_components = ["layout", "safety_checker"]

    def __init__(self, unet: UNet2DConditionModel, scheduler: DDPMScheduler, text_encoder: QuarkTextEncoder,
                 layout: TextLayout | None = None, safety_checker: Callable | None = None) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, layout=layout,
                              safety_checker=safety_checker)

    @property
    def size(self) -> int:
        return int(self.unet.config.sample_size)

    def _conditioning(self, prompts: list[str], negatives: list[str],
                      guidance: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Text states for the UNet: [negative; prompt] stacked for guidance, the prompt alone without."""
        texts = (negatives + prompts) if guidance > 1.0 else prompts
        hidden, mask = self.text_encoder.encode(texts)
        return hidden.to(self.unet.dtype), mask

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None, *,
                 num_inference_steps: int = 25, guidance_scale: float = 3.0, size: int | None = None,
                 num_images_per_prompt: int = 1, seed: int | list[int] = 0, generator: torch.Generator | None = None,
                 sampler: str = "ddim", output_type: str = "pil", return_dict: bool = True,
                 callback: Callable[[int, int], None] | None = None) -> QuarkImageOutput | tuple:
        """Sample images. Image j starts from noise seeded by `seed + j` on the CPU (or seed[j] given
        a list), so the same seed gives the same image whatever the batch or device; pass `generator`
        to draw every image's noise from it instead. `size` may differ from the trained size
        (any multiple of the UNet's downsampling factor); `callback(step, total)` reports progress.
        output_type "np" returns float arrays in [0, 1] instead of PIL images."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negative = negative_prompt if negative_prompt is not None else ""
        negatives = [negative] * len(prompts) if isinstance(negative, str) else list(negative)
        if len(negatives) != len(prompts):
            raise ValueError("negative_prompt must be one string or one per prompt")
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = [n for n in negatives for _ in range(num_images_per_prompt)]
        size = size or self.size
        device, dtype = self.unet.device, self.unet.dtype
        count = len(prompts)
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed + j for j in range(count)]
        if len(seeds) != count:
            raise ValueError(f"{len(seeds)} seeds for {count} images")
        scheduler = sampling_scheduler(self.scheduler.config, sampler)
        scheduler.set_timesteps(num_inference_steps, device=device)
        text, mask = self._conditioning(prompts, negatives, guidance_scale)
        generators = ([generator] * count if generator is not None
                      else [torch.Generator("cpu").manual_seed(s) for s in seeds])
        sample = torch.stack([torch.randn((3, size, size), generator=g) for g in generators]).to(device)
        sample = sample * scheduler.init_noise_sigma
        guided = guidance_scale > 1.0
        for index, t in enumerate(scheduler.timesteps):
            model_in = torch.cat([sample] * 2) if guided else sample
            model_in = scheduler.scale_model_input(model_in, t)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                eps = denoise(self.unet, model_in.to(dtype), t, text, mask, self.layout).float()
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            sample = scheduler.step(eps, t, sample).prev_sample
            if callback is not None:
                callback(index + 1, len(scheduler.timesteps))
        pixels = ((sample.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        flags = None
        if self.safety_checker is not None:
            pixels, flags = self.safety_checker(pixels)
            flags = [bool(f) for f in flags]
        images = pixels if output_type == "np" else self.numpy_to_pil(pixels)
        if not return_dict:
            return images, flags
        return QuarkImageOutput(images=images, nsfw_content_detected=flags)
