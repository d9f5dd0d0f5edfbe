"""The built-in procedural set: one coloured shape on a plain background, drawn with Pillow, with
a caption that states every attribute — "a small red circle at the top left on a white background".

A scene is (colour, shape, size, position, background) plus a little jitter of place and scale.
The held-out split is a fixed fifth of the (colour, shape, position) combinations: training never
sees, say, a green triangle at the bottom right, though it sees green, triangles and the bottom
right in other combinations. `quark eval image` prompts with exactly those unseen combinations, so
adherence measures composition rather than recall. Every (colour, shape) pair keeps four of its
five positions in training (the rule below picks one position per pair).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product

import numpy as np
from PIL import Image, ImageDraw

from quark.errors import QuarkError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 230), "yellow": (240, 205, 30),
    "purple": (140, 60, 190), "orange": (245, 130, 20), "cyan": (30, 200, 210), "pink": (240, 110, 180),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.14, "large": 0.25}  # the shape's half-extent, as a fraction of the side
POSITIONS: dict[str, tuple[float, float]] = {"top left": (0.28, 0.28), "top right": (0.72, 0.28),
                                             "bottom left": (0.28, 0.72), "bottom right": (0.72, 0.72),
                                             "center": (0.5, 0.5)}
SUPERSAMPLE = 4  # drawn this much larger, then reduced: anti-aliased edges


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    position: str
    background: str
    dx: float = 0.0  # jitter of the centre, fraction of the side
    dy: float = 0.0
    scale: float = 1.0  # jitter of the size

    @property
    def caption(self) -> str:
        where = "in the center" if self.position == "center" else f"at the {self.position}"
        return f"a {self.size} {self.colour} {self.shape} {where} on a {self.background} background"

    @property
    def combination(self) -> tuple[str, str, str]:
        return self.colour, self.shape, self.position


@dataclass(frozen=True)
class Vocabulary:
    """The attribute values a set uses (a recipe's `data` section picks them)."""

    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
    shapes: tuple[str, ...] = SHAPES
    backgrounds: tuple[str, ...] = ("white", "black", "gray")

    @classmethod
    def parse(cls, colours: str, shapes: str, backgrounds: str, where: str = "recipe data section") -> Vocabulary:
        def pick(text: str, known: dict | tuple, what: str) -> tuple[str, ...]:
            values = tuple(v.strip() for v in text.split(",") if v.strip())
            unknown = [v for v in values if v not in known]
            if unknown or not values:
                raise QuarkError(f"{where}: {what} {text!r}: expected a comma-separated list from {', '.join(known)}")
            return values

        vocabulary = cls(pick(colours, COLOURS, "colours"), pick(shapes, SHAPES, "shapes"),
                         pick(backgrounds, BACKGROUNDS, "backgrounds"))
        clash = set(vocabulary.colours) & set(vocabulary.backgrounds)
        if clash:
            raise QuarkError(f"{where}: {', '.join(clash)} is both a colour and a background")
        return vocabulary

    def combinations(self) -> list[tuple[str, str, str]]:
        return list(product(self.colours, self.shapes, POSITIONS))

    def is_held_out(self, combination: tuple[str, str, str]) -> bool:
        """One position in five per (colour, shape) pair, rotating so each position is held out
        for some pairs: indices into the full attribute tables, so the split does not move when a
        recipe uses fewer colours."""
        colour, shape, position = combination
        c, s, p = list(COLOURS).index(colour), SHAPES.index(shape), list(POSITIONS).index(position)
        return (c + 2 * s + p) % len(POSITIONS) == 0

    def split(self, which: str) -> list[tuple[str, str, str]]:
        held = which == "heldout"
        return [c for c in self.combinations() if self.is_held_out(c) == held]


def scenes(vocabulary: Vocabulary, count: int, seed: int, split: str = "train") -> list[Scene]:
    """`count` scenes of one split, each a random combination of that split with random size,
    background and jitter; the same (vocabulary, count, seed, split) gives the same scenes."""
    rng = random.Random(f"{seed}-{split}")
    combinations = vocabulary.split(split)
    out = []
    for _ in range(count):
        colour, shape, position = rng.choice(combinations)
        out.append(Scene(colour, shape, rng.choice(list(SIZES)), position, rng.choice(vocabulary.backgrounds),
                         dx=rng.uniform(-0.05, 0.05), dy=rng.uniform(-0.05, 0.05), scale=rng.uniform(0.9, 1.1)))
    return out


def heldout_prompts(vocabulary: Vocabulary) -> list[Scene]:
    """The evaluation prompts: every held-out combination in both sizes, backgrounds in turn."""
    combos = vocabulary.split("heldout")
    return [Scene(colour, shape, size, position, vocabulary.backgrounds[i % len(vocabulary.backgrounds)])
            for i, ((colour, shape, position), size) in enumerate(product(combos, SIZES))]


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """The outline of a square or triangle of half-extent r around (cx, cy); None for a circle.
    The triangle points up and sits so that its bounding box is centred like the others'."""
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 1.15, cy + r), (cx - r * 1.15, cy + r)]
    return None


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    polygon = shape_polygon(shape, cx, cy, r)
    if polygon is None:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(polygon, fill=fill)


def draw(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of size × size pixels."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    x, y = POSITIONS[scene.position]
    r = SIZES[scene.size] * scene.scale * big
    draw_shape(ImageDraw.Draw(image), scene.shape, (x + scene.dx) * big, (y + scene.dy) * big, r, COLOURS[scene.colour])
    return image.resize((size, size), Image.Resampling.LANCZOS)


def np_image(scene: Scene, size: int) -> np.ndarray:
    """The scene as uint8 [size, size, 3]."""
    return np.array(draw(scene, size), dtype=np.uint8)
