"""Generating images with a saved pipeline: checked requests, PNGs written atomically, asset rows.

Every front end (`quark image generate`, `/v1/images/generations`, `/image` in chat) goes through
`ImageModel.generate`, so each refuses the same bad input with the same one-line error:

    prompt       non-empty, within the text encoder's length, and passing the safety filter
    size         a multiple of the UNet's downsampling factor, 8 to 512 px
    steps        1 to 1000;  n: 1 to 16;  guidance: 0 to 30;  sampler: ddim or dpm

Each PNG carries its prompt, negative prompt, seed, steps, guidance, sampler, size and model in
PNG text chunks, and gets a row in quark.db's `assets` table (one transaction for all n). The
files are written under temporary names and renamed only when every image of the request is
ready, so a failure leaves neither files nor rows behind. Image j of a request with seed S uses
seed S + j: the same seed gives the same image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from quark import db
from quark.assets import asset_path, insert_asset
from quark.atomic import atomic_file
from quark.errors import QuarkError
from quark.home import Home
from quark.image.folders import read_meta, resolve_image_model
from quark.image.safety import PromptFilter, load_filter
from quark.models.diffusion import SAMPLERS, QuarkImagePipeline

MAX_SIZE, MAX_STEPS, MAX_IMAGES, MAX_GUIDANCE = 512, 1000, 16, 30.0


@dataclass(frozen=True)
class Asset:
    """One generated file and what made it (the row written to quark.db's `assets`)."""

    id: int
    kind: str
    path: str
    sha256: str
    prompt: str
    negative_prompt: str
    seed: int
    model: str
    params: dict[str, Any]
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "image"


@dataclass(frozen=True)
class Request:
    """One generation request, checked (ImageModel.request): image j uses seed + j."""

    prompt: str
    negative: str
    steps: int
    guidance: float
    size: int
    n: int
    sampler: str
    seed: int

    @property
    def seeds(self) -> list[int]:
        return [self.seed + j for j in range(self.n)]

    @property
    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, "guidance": self.guidance, "sampler": self.sampler, "size": self.size}


class ImageModel:
    """A loaded pipeline with its defaults and the home's safety filter."""

    def __init__(self, home: Home, name: str, *, device: str | torch.device = "cpu",
                 prompt_filter: PromptFilter | None = None) -> None:
        self.home, self.name = home, resolve_image_model(home, name)
        self.folder = home.model_dir(self.name)
        self.meta = read_meta(self.folder)
        self.filter = prompt_filter or load_filter(home.config_path)
        diffusers_logging.disable_progress_bar()  # "Loading pipeline components" is not ours to show
        try:
            self.pipeline = QuarkImagePipeline.from_pretrained(str(self.folder))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise QuarkError(f"cannot load image model {self.name!r} from {self.folder}: {exc}") from None
        self.pipeline.set_progress_bar_config(disable=True)
        self.pipeline.to(torch.device(device))
        widths = self.pipeline.unet.config.block_out_channels
        self.factor = 2 ** (len(widths) - 1)
        self.defaults = {"sampler": "ddim", "steps": 25, "guidance": 3.0, **self.meta.get("generation", {})}

    @property
    def size(self) -> int:
        return self.pipeline.size

    def check(self, prompt: str, negative: str, *, steps: int, guidance: float, size: int, n: int,
              sampler: str) -> None:
        """Refuse a request before any work, in one line naming the value."""
        self.check_settings(steps=steps, guidance=guidance, size=size, n=n, sampler=sampler)
        if not prompt.strip():
            raise QuarkError("the prompt is empty")
        encoder = self.pipeline.text_encoder
        for what, text in (("prompt", prompt), ("negative prompt", negative)):
            if (extra := encoder.too_long(text)) > 0:
                raise QuarkError(f"the {what} is {extra} tokens longer than model {self.name!r} reads "
                                 f"({encoder.max_tokens} tokens); shorten it")
        self.filter.check(prompt)

    def check_settings(self, *, steps: int, guidance: float, size: int, n: int, sampler: str) -> None:
        if not 1 <= steps <= MAX_STEPS:
            raise QuarkError(f"--steps {steps}: expected 1 to {MAX_STEPS} sampling steps")
        if not 8 <= size <= MAX_SIZE or size % self.factor:
            raise QuarkError(f"--size {size}: expected a multiple of {self.factor} from 8 to {MAX_SIZE} px "
                             f"(model {self.name!r} was trained at {self.size} px)")
        if not 1 <= n <= MAX_IMAGES:
            raise QuarkError(f"--n {n}: expected 1 to {MAX_IMAGES} images")
        if not 0 <= guidance <= MAX_GUIDANCE:
            raise QuarkError(f"--guidance {guidance}: expected 0 to {MAX_GUIDANCE:g}")
        if sampler not in SAMPLERS:
            raise QuarkError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")

    def images(self, prompts: list[str], seeds: list[int], *, negative: str = "", steps: int | None = None,
               guidance: float | None = None, size: int | None = None, sampler: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> tuple[list[Image.Image], list[bool] | None]:
        """Raw sampling (no checks, no files): PIL images and the safety checker's flags."""
        d = self.defaults
        out = self.pipeline(prompts, [negative] * len(prompts), num_inference_steps=steps or d["steps"],
                            guidance_scale=d["guidance"] if guidance is None else guidance, size=size or self.size,
                            seed=seeds, sampler=sampler or d["sampler"], callback=on_step)
        return out.images, out.nsfw_content_detected

    def request(self, prompt: str, *, negative: str = "", steps: int | None = None, guidance: float | None = None,
                seed: int | None = None, size: int | None = None, n: int = 1, sampler: str | None = None) -> Request:
        """A checked request with the model's defaults filled in and its seeds drawn (no work yet)."""
        d = self.defaults
        request = Request(prompt, negative, d["steps"] if steps is None else steps,
                          d["guidance"] if guidance is None else guidance, self.size if size is None else size, n,
                          sampler or d["sampler"], secrets.randbelow(2**31) if seed is None else seed)
        self.check(prompt, negative, steps=request.steps, guidance=request.guidance, size=request.size, n=n,
                   sampler=request.sampler)
        return request

    def run(self, request: Request, *, output: Path | None = None,
            on_step: Callable[[int, int], None] | None = None) -> list[Asset]:
        """Sample a checked request and write its n PNGs (under assets/ or at `output`) and rows."""
        paths = self._paths(request.prompt, request.seeds, output)
        images, flags = self.images([request.prompt] * request.n, request.seeds, negative=request.negative,
                                    steps=request.steps, guidance=request.guidance, size=request.size,
                                    sampler=request.sampler, on_step=on_step)
        if flags and any(flags):
            raise QuarkError(f"the safety checker flagged {sum(flags)} of {request.n} images; nothing was saved")
        return self._save(images, paths, request)

    def generate(self, prompt: str, *, output: Path | None = None, on_step: Callable[[int, int], None] | None = None,
                 **settings: Any) -> list[Asset]:
        """request() then run(): check, sample, save."""
        return self.run(self.request(prompt, **settings), output=output, on_step=on_step)

    def _paths(self, prompt: str, seeds: list[int], output: Path | None) -> list[Path]:
        if output is not None:
            output = Path(output).expanduser()
            if output.suffix.lower() != ".png":
                raise QuarkError(f"-o {output}: image files are PNG; name it ….png")
            if output.is_dir():
                raise QuarkError(f"-o {output}: is a folder; give a file name ending in .png")
            if len(seeds) == 1:
                return [output.resolve()]
            return [output.with_name(f"{output.stem}-{j}{output.suffix}").resolve() for j in range(len(seeds))]
        return [asset_path(self.home, "image", f"{_slug(prompt)}-{s}", "png") for s in seeds]

    def _save(self, images: list[Image.Image], paths: list[Path], request: Request) -> list[Asset]:
        """Write every PNG under a temporary name, insert the rows, then rename: all or nothing."""
        now, prompt, negative = time.time(), request.prompt, request.negative
        seeds, params = request.seeds, request.params
        conn = db.connect(self.home.db_path)
        try:
            with contextlib.ExitStack() as files:
                digests = []
                for image, path, seed in zip(images, paths, seeds):
                    info = PngInfo()
                    for key, value in {"prompt": prompt, "negative_prompt": negative, "seed": seed, "model": self.name,
                                       **params, "software": "quark image"}.items():
                        info.add_text(key, str(value))
                    png = io.BytesIO()
                    image.save(png, format="PNG", pnginfo=info)
                    files.enter_context(atomic_file(path, "wb")).write(png.getvalue())
                    digests.append(hashlib.sha256(png.getvalue()).hexdigest())
                with db.transaction(conn):
                    ids = [insert_asset(conn, "image", path, digest, prompt=prompt, negative_prompt=negative, seed=seed,
                                        model=self.name, params=params)
                           for path, digest, seed in zip(paths, digests, seeds)]
                    files.close()  # the renames, inside the transaction: a failed one rolls the rows back
        finally:
            conn.close()
        return [Asset(i, "image", str(p), d, prompt, negative, s, self.name, params, now)
                for i, p, d, s in zip(ids, paths, digests, seeds)]


def png_text(path: Path) -> dict[str, str]:
    """The text chunks of a PNG Quark wrote (prompt, seed, …)."""
    with Image.open(path) as image:
        return dict(image.text)
