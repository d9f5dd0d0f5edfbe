"""Prompt adherence on the held-out shapes prompts, scored by a deterministic analyser.

For each generated image the analyser finds the background (the median colour of the border),
the foreground (pixels far from it), and reads back four attributes:

    colour     the palette colour nearest the foreground's median colour
    position   the caption position (top left, …, center) nearest the foreground's centroid
    shape      the shape whose template — drawn at that centroid with the foreground's area —
               overlaps the foreground best (intersection over union)
    size       small or large, from the foreground's area for that shape
    background the vocabulary's background colour nearest the border's median (read, but not
               part of the evaluator's score: its prompts take backgrounds in turn)

Each attribute's accuracy is reported beside its chance level (1 / number of values), so a
model that ignores its prompt scores near chance. Run on the drawn scenes themselves
(`reference=True`) the analyser must score 1.0: that checks the analyser, not a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from quark.image import shapes
from quark.image.shapes import POSITIONS, SIZES, Scene, Vocabulary

FOREGROUND_DISTANCE = 70.0  # RGB distance from the background that counts as foreground
MIN_FOREGROUND = 0.004  # fraction of the image below which nothing was drawn
# Area of each shape of half-extent r, in units of r² (see shapes.shape_polygon).
AREA_FACTOR = {"circle": np.pi, "square": 4.0, "triangle": 2.3}
ATTRIBUTES = ("colour", "position", "shape", "size")


@dataclass(frozen=True)
class Reading:
    colour: str | None
    position: str | None
    shape: str | None
    size: str | None
    background: str | None = None


def _template(shape: str, cx: float, cy: float, r: float, n: int) -> np.ndarray:
    image = Image.new("L", (n * 4, n * 4), 0)
    shapes.draw_shape(ImageDraw.Draw(image), shape, cx * 4, cy * 4, r * 4, 255)
    return np.asarray(image.resize((n, n), Image.Resampling.BILINEAR)) >= 128


def analyse(image: np.ndarray, vocabulary: Vocabulary) -> Reading:
    """The attributes of one RGB image (uint8 [H, W, 3] or float in [0, 1])."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.max() <= 1.0:
        pixels = pixels * 255.0
    n = pixels.shape[0]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    backgrounds = {name: np.array(shapes.BACKGROUNDS[name], dtype=np.float32) for name in vocabulary.backgrounds}
    background_name = min(backgrounds, key=lambda name: float(np.linalg.norm(backgrounds[name] - background)))
    mask = np.linalg.norm(pixels - background, axis=-1) > FOREGROUND_DISTANCE
    if mask.mean() < MIN_FOREGROUND:
        return Reading(None, None, None, None, background_name)
    colour = np.median(pixels[mask], axis=0)
    palette = {name: np.array(shapes.COLOURS[name], dtype=np.float32) for name in vocabulary.colours}
    colour_name = min(palette, key=lambda name: float(np.linalg.norm(palette[name] - colour)))
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / n, (ys.mean() + 0.5) / n
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    area = float(mask.sum())
    best, best_iou, best_r = None, -1.0, 0.0
    for shape in vocabulary.shapes:
        r = np.sqrt(area / AREA_FACTOR[shape])
        centre_y = cy * n - (r / 3 if shape == "triangle" else 0.0)  # a triangle's centroid sits low in its box
        template = _template(shape, cx * n, centre_y, r, n)
        iou = float((template & mask).sum() / max(1, (template | mask).sum()))
        if iou > best_iou:
            best, best_iou, best_r = shape, iou, r
    threshold = np.sqrt(SIZES["small"] * SIZES["large"])  # geometric midpoint of the two half-extents
    size = "small" if best_r / n < threshold else "large"
    return Reading(colour_name, position, best, size, background_name)


def chance(vocabulary: Vocabulary) -> dict[str, float]:
    return {"colour": 1 / len(vocabulary.colours), "position": 1 / len(POSITIONS),
            "shape": 1 / len(vocabulary.shapes), "size": 1 / len(SIZES)}


def score(scenes: Sequence[Scene], images: Sequence[np.ndarray], vocabulary: Vocabulary) -> dict:
    """Per-attribute accuracy and its chance level over (prompted scene, image) pairs."""
    hits = {a: 0 for a in ATTRIBUTES}
    for scene, image in zip(scenes, images, strict=True):
        reading = analyse(image, vocabulary)
        hits["colour"] += reading.colour == scene.colour
        hits["position"] += reading.position == scene.position
        hits["shape"] += reading.shape == scene.shape
        hits["size"] += reading.size == scene.size
    total = max(1, len(scenes))
    metrics: dict = {a: hits[a] / total for a in ATTRIBUTES}
    metrics.update({f"{a}_chance": c for a, c in chance(vocabulary).items()})
    metrics["images"] = len(scenes)
    return metrics


def evaluate(generate: Callable[[list[str], list[int]], list[np.ndarray]] | None, vocabulary: Vocabulary, *,
             size: int, samples: int = 1, seed: int = 0, batch: int = 16,
             on_batch: Callable[[int], None] | None = None) -> dict:
    """Adherence over every held-out prompt, `samples` images each (seeds seed, seed+1, …).

    `generate(prompts, seeds)` returns float images in [0, 1]; None scores the drawn scenes
    themselves (the analyser's reference check)."""
    prompts = shapes.heldout_prompts(vocabulary)
    jobs = [(scene, seed + k) for scene in prompts for k in range(samples)]
    images: list[np.ndarray] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        if generate is None:
            images += [shapes.np_image(scene, size) for scene, _ in chunk]
        else:
            images += generate([scene.caption for scene, _ in chunk], [s for _, s in chunk])
        if on_batch is not None:
            on_batch(len(chunk))
    metrics = score([scene for scene, _ in jobs], images, vocabulary)
    metrics.update(prompts=len(prompts), samples_per_prompt=samples)
    return metrics


def adherence(home, model: str | None, *, samples: int = 2, steps: int | None = None, guidance: float | None = None,
              sampler: str | None = None, seed: int = 0, on_images: Callable[[int], None] | None = None
              ) -> tuple[dict, str | None]:
    """(metrics, training run) of image model `model` of `home` on the held-out prompts of the
    vocabulary it was trained with; `model=None` scores the drawn scenes (the reference)."""
    from quark.image.generate import ImageModel
    from quark.image.recipe import ShapeData

    if model is None:
        vocabulary = ShapeData().vocabulary()
        metrics = evaluate(None, vocabulary, size=32, samples=1, seed=seed, on_batch=on_images)
        return {**metrics, "reference": True}, None
    image_model = ImageModel(home, model)
    recorded = image_model.meta.get("vocabulary") or {}
    vocabulary = ShapeData(**recorded).vocabulary(f"{image_model.folder / 'quark_image.json'}") if recorded \
        else ShapeData().vocabulary()
    d = image_model.defaults
    steps, sampler = steps or d["steps"], sampler or d["sampler"]
    guidance = d["guidance"] if guidance is None else guidance
    image_model.check_settings(steps=steps, guidance=guidance, size=image_model.size, n=1, sampler=sampler)

    def generate(prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        images, _ = image_model.images(prompts, seeds, steps=steps, guidance=guidance, sampler=sampler)
        return [np.asarray(image) for image in images]

    metrics = evaluate(generate, vocabulary, size=image_model.size, samples=samples, seed=seed, on_batch=on_images)
    metrics.update(steps=steps, guidance=guidance, sampler=sampler, resolution=image_model.size,
                   trained_on_shapes=bool(recorded))
    return metrics, image_model.meta.get("source_run")
