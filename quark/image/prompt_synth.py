"""Ask → image-prompt chat pairs for the `image-prompt` adapter (`quark data synth --kind image-prompt`).

The image model (quark.image) knows one caption form, the one its procedural set is drawn with:
"a small red circle at the top left on a white background". People do not ask like that; they
say "draw me a tiny red dot up in the top left corner, white background please". The specialist
rewrites such an ask into the caption, which `quark image generate --prompt` then draws; the router
sends a picture ask to it (quark.agent.routing: label `image` → adapter `image-prompt`).

Each ask is templated from a scene's attributes with everyday wording: synonyms for the size,
shape, position and background, and several sentence orders. The reply is exactly the caption.
Its split group is the (colour, shape, position) combination, so held-out asks are combinations
never seen in training, of words that were. Every row also carries the scene's attributes
(`scene`), and each pair is kept only if the image evaluator's analyser, run on the scene the
caption describes drawn by the procedural set, reads every attribute back: the caption is one
the image side draws and grades.

With an `ImageJudge` (`quark data synth --kind image-prompt --image-model NAME`) each pair is also
scored by the plan's prompt-to-image feedback: a trained Quark image pipeline draws the caption (a
few seeded DDIM steps; scene i of `all_scenes()` uses seed `seed + i`, so the same seed gives the
same data), the analyser reads the image back with the full attribute tables (every word a caption
can hold), the row stores the per-attribute adherence (`adherence`: 1.0 or 0.0 per attribute, their
mean as `score`, and the model, seed and steps that drew it), and only pairs whose image scores at
least `min_adherence` are kept (default 1.0: every attribute read back). A model that ignores its
prompt therefore keeps few pairs: the specialist learns only the captions the image model draws.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import product
from typing import TYPE_CHECKING

import numpy as np

from quark.errors import QuarkError
from quark.image import evaluate, shapes
from quark.image.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Scene

if TYPE_CHECKING:  # torch and diffusers load only when a judge is built
    from quark.image.generate import ImageModel

SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")}
SHAPE_WORDS = {"circle": ("circle", "dot", "disc"), "square": ("square", "box"), "triangle": ("triangle",)}
POSITION_WORDS = {
    "top left": ("in the top left corner", "up in the top left", "at the upper left"),
    "top right": ("in the top right corner", "up in the top right", "at the upper right"),
    "bottom left": ("in the bottom left corner", "down in the bottom left", "at the lower left"),
    "bottom right": ("in the bottom right corner", "down in the bottom right", "at the lower right"),
    "center": ("in the middle", "in the center", "right in the centre"),
}
BACKGROUND_WORDS = {"white": ("white", "plain white"), "black": ("black", "dark black"), "gray": ("gray", "grey")}
ASKS = (
    "draw me a {size} {colour} {shape} {where} on a {bg} background",
    "Can you make a picture of a {size} {colour} {shape} {where}? {Bg} background please.",
    "I'd like an image: {bg} background, a {colour} {shape} {where}, {size}.",
    "generate an image of a {size} {colour} {shape} {where} against {bg}",
    "Paint a {colour} {shape}, {size}, {where}, with a {bg} background.",
    "picture please: {size} {colour} {shape} {where}, {bg} backdrop",
)
ASKS_PER_SCENE = 2
SAMPLE_SIZE = 64  # pixels of the drawn scene the analyser reads back
JUDGED = (*evaluate.ATTRIBUTES, "background")  # every word of the caption the image model must draw


def ask(scene: Scene, rng: random.Random) -> str:
    """One everyday wording of the picture `scene` shows."""
    background = rng.choice(BACKGROUND_WORDS[scene.background])
    text = rng.choice(ASKS).format(size=rng.choice(SIZE_WORDS[scene.size]), colour=scene.colour,
                                   shape=rng.choice(SHAPE_WORDS[scene.shape]),
                                   where=rng.choice(POSITION_WORDS[scene.position]), bg=background,
                                   Bg=background[0].upper() + background[1:])
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)  # "an orange box"


def all_scenes() -> list[Scene]:
    """Every colour × shape × size × position × background of the image set's full tables."""
    return [Scene(colour, shape, size, position, background)
            for colour, shape, size, position, background in product(COLOURS, SHAPES, SIZES, POSITIONS, BACKGROUNDS)]


def _full_tables() -> shapes.Vocabulary:
    return shapes.Vocabulary(tuple(COLOURS), SHAPES, tuple(BACKGROUNDS))


@cache  # 720 scenes, ~20 ms each: drawn once per process whatever the seed
def drawn_as_captioned(scene: Scene) -> bool:
    """The image evaluator's analyser reads every attribute of the caption back from its drawing."""
    reading = evaluate.analyse(shapes.np_image(scene, SAMPLE_SIZE), _full_tables())
    return (reading.colour, reading.shape, reading.size, reading.position) == (scene.colour, scene.shape, scene.size,
                                                                               scene.position)


@dataclass(frozen=True)
class ImageJudge:
    """Adherence of a trained image model's drawing of each caption (the prompt-to-image feedback).

    `draw(captions, seeds)` returns RGB images (`for_model`: a Quark pipeline's DDIM sampler at
    `steps` steps); `model` and `steps` are recorded on every row."""

    draw: Callable[[list[str], list[int]], list[np.ndarray]]
    model: str
    steps: int
    min_adherence: float = 1.0
    batch: int = 32

    @classmethod
    def for_model(cls, image_model: ImageModel, *, steps: int = 8, min_adherence: float = 1.0) -> ImageJudge:
        """A judge drawing with a loaded pipeline, at its default guidance, `steps` DDIM steps."""
        image_model.check_settings(steps=steps, guidance=image_model.defaults["guidance"], size=image_model.size,
                                   n=1, sampler="ddim")
        if not 0.0 <= min_adherence <= 1.0:
            raise QuarkError(f"--min-adherence {min_adherence}: expected 0 to 1 (the share of attributes read back)")

        def draw(captions: list[str], seeds: list[int]) -> list[np.ndarray]:
            images, _ = image_model.images(captions, seeds, steps=steps, sampler="ddim")
            return [np.asarray(image) for image in images]

        return cls(draw, image_model.name, steps, min_adherence)

    def scores(self, scenes: Sequence[Scene], seeds: Sequence[int]) -> list[dict]:
        """Per scene: 1.0/0.0 per attribute the analyser reads back from the drawn caption, and the mean."""
        vocabulary, out = _full_tables(), []
        for start in range(0, len(scenes), self.batch):
            chunk, chunk_seeds = scenes[start:start + self.batch], list(seeds[start:start + self.batch])
            for scene, seed, image in zip(chunk, chunk_seeds, self.draw([s.caption for s in chunk], chunk_seeds),
                                          strict=True):
                reading = evaluate.analyse(image, vocabulary)
                hits = {a: float(getattr(reading, a) == getattr(scene, a)) for a in JUDGED}
                out.append({**hits, "score": sum(hits.values()) / len(hits), "model": self.model, "seed": seed,
                            "steps": self.steps})
        return out


def image_prompt_rows(seed: int = 0, judge: ImageJudge | None = None) -> Iterator[tuple[str, dict]]:
    """(group, row) pairs in a seed-determined order: `ASKS_PER_SCENE` asks per scene, each → its caption;
    with `judge`, only scenes whose drawing by the judge's image model passes, each row with its score."""
    rng = random.Random(seed)
    indexed = [(i, scene) for i, scene in enumerate(all_scenes()) if drawn_as_captioned(scene)]
    adherence: list[dict | None] = [None] * len(indexed)
    if judge is not None:
        adherence = list(judge.scores([scene for _, scene in indexed], [seed + i for i, _ in indexed]))
    rows = []
    for (_, scene), score in zip(indexed, adherence, strict=True):
        attributes = {"colour": scene.colour, "shape": scene.shape, "size": scene.size, "position": scene.position,
                      "background": scene.background}
        asks = [ask(scene, rng) for _ in range(ASKS_PER_SCENE)]  # drawn before judging: a kept pair's ask is unchanged
        if judge is not None and score is not None and score["score"] < judge.min_adherence:
            continue
        for text in asks:
            rows.append((f"image-prompt:{scene.colour}:{scene.shape}:{scene.position}",
                         {"messages": [{"role": "user", "content": text},
                                       {"role": "assistant", "content": scene.caption}],
                          "prompt": text, "caption": scene.caption, "scene": attributes,
                          **({"adherence": score} if score is not None else {})}))
    rng.shuffle(rows)
    yield from rows
