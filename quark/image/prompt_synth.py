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
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from functools import cache
from itertools import product

from quark.image import evaluate, shapes
from quark.image.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Scene

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


@cache  # 720 scenes, ~20 ms each: drawn once per process whatever the seed
def drawn_as_captioned(scene: Scene) -> bool:
    """The image evaluator's analyser reads every attribute of the caption back from its drawing."""
    vocabulary = shapes.Vocabulary(tuple(COLOURS), SHAPES, tuple(BACKGROUNDS))
    reading = evaluate.analyse(shapes.np_image(scene, SAMPLE_SIZE), vocabulary)
    return (reading.colour, reading.shape, reading.size, reading.position) == (scene.colour, scene.shape, scene.size,
                                                                               scene.position)


def image_prompt_rows(seed: int = 0) -> Iterator[tuple[str, dict]]:
    """(group, row) pairs in a seed-determined order: `ASKS_PER_SCENE` asks per scene, each → its caption."""
    rng = random.Random(seed)
    rows = []
    for scene in all_scenes():
        if not drawn_as_captioned(scene):
            continue
        attributes = {"colour": scene.colour, "shape": scene.shape, "size": scene.size, "position": scene.position,
                      "background": scene.background}
        for _ in range(ASKS_PER_SCENE):
            text = ask(scene, rng)
            rows.append((f"image-prompt:{scene.colour}:{scene.shape}:{scene.position}",
                         {"messages": [{"role": "user", "content": text},
                                       {"role": "assistant", "content": scene.caption}],
                          "prompt": text, "caption": scene.caption, "scene": attributes}))
    rng.shuffle(rows)
    yield from rows
