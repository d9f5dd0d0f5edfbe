"""Captioned images in memory, and the deterministic batches the Trainer draws from them.

A folder of training images is read one of two ways (SPEC §9):

    photo.png + photo.txt          an image and its caption side by side (any Pillow format)
    metadata.jsonl                 Hugging Face imagefolder: {"file_name": "photo.png", "text": "..."}
                                   per line ("caption" is accepted for "text")

Every image is checked before training starts. A file Pillow cannot decode, a caption whose image
is missing, an image without a caption or a metadata row naming no file is refused with its path
(`skip_bad=True` skips unreadable images instead, naming each one). Images are centre-cropped to
a square, resized to the recipe's size and kept as uint8.

`DiffusionBatches.take(start, count)` returns samples [start, start+count) of an endless sequence:
sample s is image perm_e[s mod N] of epoch e = s // N, with its own noise, timestep and caption
dropout drawn from a generator seeded by (seed, s). The same index gives the same tensors in any
process and after any resume, which is what makes a resumed run repeat its losses exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from quark.errors import QuarkError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
NULL_CAPTION = ""  # the unconditional input: always entry 0 of a caption table


@dataclass
class CaptionedImages:
    """N images as uint8 [N, size, size, 3] with one caption each; `skipped` names what was left out."""

    pixels: torch.Tensor
    captions: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


def to_square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size × size RGB (transparency composited on white)."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _load(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return to_square_rgb(image, size)


def _pairs_from_metadata(folder: Path) -> list[tuple[Path, str]]:
    path = folder / "metadata.jsonl"
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise QuarkError(f"{path}:{number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise QuarkError(f"{path}:{number}: each row needs a string 'file_name'")
        text = row.get("text", row.get("caption"))
        if not isinstance(text, str):
            raise QuarkError(f"{path}:{number}: row for {row['file_name']!r} needs a string 'text' (or 'caption')")
        file = (folder / row["file_name"]).resolve()
        if folder.resolve() not in file.parents:
            raise QuarkError(f"{path}:{number}: file_name {row['file_name']!r} points outside {folder}")
        if not file.is_file():
            raise QuarkError(f"{path}:{number}: caption for {row['file_name']!r}, but there is no such image")
        pairs.append((file, text))
    return pairs


def _pairs_from_sidecars(folder: Path) -> list[tuple[Path, str]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = {p.stem: p for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
    captions = {p.stem: p for p in files if p.suffix.lower() == ".txt"}
    for stem, caption in captions.items():
        if stem not in images:
            raise QuarkError(f"{caption}: a caption without its image (no {stem}.png or other image beside it)")
    pairs = []
    for stem, image in sorted(images.items()):
        if stem not in captions:
            raise QuarkError(f"{image}: an image without its caption (expected {stem}.txt beside it)")
        pairs.append((image, captions[stem].read_text(encoding="utf-8").strip()))
    return pairs


def read_folder(folder: Path, size: int, *, skip_bad: bool = False) -> CaptionedImages:
    """Every captioned image of `folder` (see the module docstring), checked and resized."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise QuarkError(f"--data {str(folder)!r}: not a folder of images and captions")
    pairs = _pairs_from_metadata(folder) if (folder / "metadata.jsonl").is_file() else _pairs_from_sidecars(folder)
    if not pairs:
        raise QuarkError(f"{folder}: no captioned images (x.png + x.txt pairs, or a metadata.jsonl)")
    pixels, captions, skipped = [], [], []
    for path, caption in pairs:
        try:
            pixels.append(_load(path, size))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            if not skip_bad:
                raise QuarkError(f"{path}: unreadable image ({type(exc).__name__}: {exc}); fix or remove it, "
                                 "or pass --skip-bad to leave such images out") from None
            skipped.append(f"{path}: {type(exc).__name__}")
            continue
        captions.append(caption)
    if not captions:
        raise QuarkError(f"{folder}: every image was unreadable ({len(skipped)} skipped)")
    return CaptionedImages(torch.from_numpy(np.stack(pixels)), captions, skipped)


@dataclass
class CaptionTable:
    """Each distinct caption once, with the frozen text encoder's states for it: entry 0 is the
    empty caption. `index[i]` is image i's row."""

    hidden: torch.Tensor  # [U, T, D] float32
    mask: torch.Tensor  # [U, T] bool
    index: torch.Tensor  # [N] long

    @classmethod
    def build(cls, encoder, captions: list[str], batch: int = 64) -> CaptionTable:
        """Encode every distinct caption once (the cache that keeps the LLM out of the training step).
        A caption longer than the encoder reads is refused, never cut."""
        for caption in dict.fromkeys(captions):
            if (extra := encoder.too_long(caption)) > 0:
                raise QuarkError(f"caption {caption[:60]!r} is {extra} tokens longer than the text encoder reads "
                                 f"({encoder.max_tokens}; raise model.text_max_tokens)")
        unique = [NULL_CAPTION, *dict.fromkeys(c for c in captions if c != NULL_CAPTION)]
        rows = {c: i for i, c in enumerate(unique)}
        hidden, mask = [], []
        for start in range(0, len(unique), batch):
            h, m = encoder.encode(unique[start:start + batch])
            hidden.append(h.cpu())
            mask.append(m.cpu())
        return cls(torch.cat(hidden), torch.cat(mask), torch.tensor([rows[c] for c in captions], dtype=torch.long))

    def fit_standardization(self, encoder) -> CaptionTable:
        """Fit the encoder's standardization on this table's captions (every entry but the empty
        caption's) and return the table as the encoder now encodes it: the cached states are
        standardized in place of a second pass through the LLM."""
        mean, std = encoder.fit_standardization(self.hidden[1:], self.mask[1:])
        return CaptionTable((self.hidden - mean) / std * self.mask[..., None], self.mask, self.index)


class DiffusionBatches:
    """The Trainer's data source for a denoiser (see the module docstring).

    Each sample: pixels in [-1, 1] [3, H, W], its noise, a timestep in [0, timesteps), and the
    caption's text states, replaced by the empty caption's with probability `dropout`.
    """

    def __init__(self, images: CaptionedImages, table: CaptionTable, *, timesteps: int, seed: int,
                 dropout: float = 0.0, shuffle: bool = True) -> None:
        self.images, self.table = images, table
        self.timesteps, self.seed, self.dropout, self.shuffle = timesteps, seed, dropout, shuffle
        self._orders: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.images)

    def _item(self, sample: int) -> int:
        epoch, position = divmod(sample, len(self.images))
        if not self.shuffle:
            return position
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders[epoch] = torch.randperm(len(self.images), generator=generator)
        return int(self._orders[epoch][position])

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        items, noise, steps, rows = [], [], [], []
        shape = tuple(self.images.pixels.shape[1:])
        generator = torch.Generator()  # reseeded per sample: the same draws as a fresh one, without its setup
        for sample in range(start, start + count):
            item = self._item(sample)
            generator.manual_seed((self.seed << 32) + sample)
            noise.append(torch.randn((shape[2], shape[0], shape[1]), generator=generator))
            steps.append(int(torch.randint(0, self.timesteps, (1,), generator=generator)))
            dropped = self.dropout > 0 and float(torch.rand((), generator=generator)) < self.dropout
            items.append(item)
            rows.append(0 if dropped else int(self.table.index[item]))
        pixels = self.images.pixels[items].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        rows_t = torch.tensor(rows)
        return {"pixels": pixels.contiguous(), "noise": torch.stack(noise), "timesteps": torch.tensor(steps),
                "text": self.table.hidden[rows_t], "text_mask": self.table.mask[rows_t]}
