"""Prompt → scene-program chat pairs for training the 3D adapter (`quark data synth --kind mesh`).

Prompts are templated from attributes: an object family (mug, table, stack, row, pair of shapes,
nut, ring, bracket), colours, counts (legs, stacked or lined-up shapes, holes), primitive kinds
and spatial relations ("a red sphere on top of a blue box"). Each example's *group* is its
combination of attributes other than the free wording; `quark.data.synth` splits on a hash of the
group, so the held-out prompts are combinations the model never saw in training, made of
attributes it did see. The reply is the program's compact JSON, which is all the model writes.

Every part's name starts with its colour and says what it is (`red_cylinder2`, `blue_top`), and
the part's `color` comes right after its name (the models' field order, which the schema and so
the decoding grammar keep). With the colour only in the `color` field, the small adapter of the
`mesh-lora-tiny` recipe never learnt colours (at chance after 900 steps, while kinds were exact);
named this way, its 900 steps got every held-out colour right, though not under every seed
(benchmarks/RESULTS.md, "## Mesh", issue 13).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from quark.mesh.program import Program

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "gold")
KINDS = ("box", "sphere", "cylinder", "cone", "capsule", "torus")
RELATIONS = {"on top of": (0, 0, 1), "under": (0, 0, -1), "to the left of": (-1, 0, 0),
             "to the right of": (1, 0, 0), "in front of": (0, -1, 0), "behind": (0, 1, 0)}
WORDINGS = ("{}", "{}", "make {}", "model {}", "a 3D model of {}", "build {}", "I want {}")
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _shape(kind: str, size: float = 1.0, **placement) -> dict:
    """A primitive of about `size` across, centred at the origin, for the templates."""
    half = size / 2
    node = {"box": {"type": "box", "size": [size, size, size]},
            "sphere": {"type": "sphere", "radius": half},
            "cylinder": {"type": "cylinder", "radius": half, "height": size},
            "cone": {"type": "cone", "radius": half, "height": size},
            "capsule": {"type": "capsule", "radius": 0.3 * size, "height": 0.4 * size},
            "torus": {"type": "torus", "radius": 0.35 * size, "tube_radius": 0.15 * size}}[kind]
    return {**node, **{k: v for k, v in placement.items() if v is not None}}


def _part(color: str, name: str, shape: dict) -> dict:
    """A part named after its colour and what it is (`red_mug`): the name carries the colour."""
    return {"name": f"{color}_{name}", "color": color, "shape": shape}


def _program(parts: list[dict], segments: int = 24) -> str:
    return Program.model_validate({"parts": parts, "segments": segments}).to_json()


def mug(color: str) -> str:
    body = {"type": "union", "children": [
        {"type": "cylinder", "radius": 1.0, "height": 2.4},
        {"type": "torus", "radius": 0.6, "tube_radius": 0.13, "rotate": [90, 0, 0], "translate": [1.05, 0, 0.1]}]}
    hole = {"type": "cylinder", "radius": 0.85, "height": 2.4, "translate": [0, 0, 0.15]}
    return _program([_part(color, "mug", {"type": "difference", "children": [body, hole]})])


def table(color: str, legs: int, leg: str) -> str:
    import math

    spots = ([(1.7 * sx, 1.0 * sy) for sx in (1, -1) for sy in (1, -1)] if legs == 4 else
             [(1.6 * math.cos(2 * math.pi * i / legs), 1.0 * math.sin(2 * math.pi * i / legs)) for i in range(legs)])
    node = ({"type": "cylinder", "radius": 0.12, "height": 2.0} if leg == "round" else
            {"type": "box", "size": [0.24, 0.24, 2.0]})
    children = [{**node, "translate": [round(x, 3), round(y, 3), 1.0]} for x, y in spots]
    return _program([_part(color, "top", {"type": "box", "size": [4.0, 2.5, 0.2], "translate": [0, 0, 2.1]}),
                     _part(color, "legs", {"type": "union", "children": children})])


def stack(color: str, count: int, kind: str) -> str:
    return _program([_part(color, f"{kind}{i + 1}", _shape(kind, translate=[0, 0, float(i)])) for i in range(count)])


def row(color: str, count: int, kind: str) -> str:
    return _program([_part(color, f"{kind}{i + 1}", _shape(kind, translate=[1.5 * i, 0, 0])) for i in range(count)])


def pair(kind_a: str, color_a: str, relation: str, kind_b: str, color_b: str) -> str:
    dx, dy, dz = RELATIONS[relation]
    offset = [1.5 * dx, 1.5 * dy, 1.0 * dz] if dz else [1.5 * dx, 1.5 * dy, 0.0]
    return _program([_part(color_a, f"{kind_a}1", _shape(kind_a, translate=offset)),
                     _part(color_b, f"{kind_b}2", _shape(kind_b))])


def nut(color: str) -> str:
    hexagon = [[1.0, 0.0], [0.5, 0.866], [-0.5, 0.866], [-1.0, 0.0], [-0.5, -0.866], [0.5, -0.866]]
    return _program([_part(color, "nut", {"type": "difference", "children": [
        {"type": "extrude", "points": hexagon, "height": 0.8}, {"type": "cylinder", "radius": 0.5, "height": 1.0}]})])


def ring(color: str) -> str:
    return _program([_part(color, "ring", {"type": "torus", "radius": 1.0, "tube_radius": 0.25})], 32)


def bracket(color: str, holes: int) -> str:
    xs = [round(-0.6 + 2.2 * (i + 1) / (holes + 1), 3) for i in range(holes)]
    plate = {"type": "union", "children": [{"type": "box", "size": [4.0, 1.5, 0.3], "translate": [0, 0, 0.15]},
                                           {"type": "box", "size": [0.3, 1.5, 2.5], "translate": [-1.85, 0, 1.25]}]}
    cuts = [{"type": "cylinder", "radius": 0.25, "height": 1.0, "translate": [x, 0, 0.15]} for x in xs]
    return _program([_part(color, "bracket", {"type": "difference", "children": [plate, *cuts]})])


def _plural(kind: str) -> str:
    return {"box": "boxes", "torus": "tori"}.get(kind, kind + "s")


def combinations(rng: random.Random, pairs: int = 1200) -> Iterator[tuple[str, str, str]]:
    """(group, description, program JSON) for every templated object."""
    for color in COLORS:
        yield f"mug:{color}", f"a {color} mug", mug(color)
        yield f"nut:{color}", f"a {color} hex nut", nut(color)
        yield f"ring:{color}", f"a {color} ring", ring(color)
        for holes in (1, 2, 3):
            yield f"bracket:{color}:{holes}", (f"a {color} bracket with {NUMBERS[holes]} "
                                               f"hole{'s' * (holes > 1)}"), bracket(color, holes)
        for legs, leg in itertools.product((3, 4, 6), ("round", "square")):
            yield f"table:{color}:{legs}:{leg}", (f"a {color} table with {NUMBERS[legs]} {leg} "
                                                  "legs"), table(color, legs, leg)
        for count, kind in itertools.product((2, 3, 4, 5), KINDS):
            yield (f"stack:{color}:{count}:{kind}", f"a stack of {NUMBERS[count]} {color} {_plural(kind)}",
                   stack(color, count, kind))
            yield (f"row:{color}:{count}:{kind}", f"a row of {NUMBERS[count]} {color} {_plural(kind)}",
                   row(color, count, kind))
    for _ in range(pairs):
        kind_a, kind_b = rng.choice(KINDS), rng.choice(KINDS)
        color_a, color_b = rng.choice(COLORS), rng.choice(COLORS)
        relation = rng.choice(list(RELATIONS))
        yield (f"pair:{kind_a}:{relation}:{kind_b}", f"a {color_a} {kind_a} {relation} a {color_b} {kind_b}",
               pair(kind_a, color_a, relation, kind_b, color_b))


def mesh_rows(seed: int = 0) -> Iterator[tuple[str, dict]]:
    """(group, chat row) pairs, in a seed-determined order, for quark.data.synth's writer."""
    rng = random.Random(seed)
    rows = [(group, {"messages": [{"role": "user", "content": rng.choice(WORDINGS).format(text)},
                                  {"role": "assistant", "content": program}]})
            for group, text, program in combinations(rng)]
    rng.shuffle(rows)
    yield from rows
