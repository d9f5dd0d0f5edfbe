"""`quark eval mesh`: how well a model turns held-out prompts into scene programs.

Three measures, on the held-out split of `quark data synth --kind mesh` (attribute combinations
never trained on):
- validity: the share of replies that validate as programs, and the share that build;
- attribute adherence: primitive kinds, primitive count, colours and the spatial relation of the
  first two parts, each compared with the reference program's (kinds and colours as exact sets: a
  pair with one of its two kinds wrong scores 0); beside the exact sets, kinds and colours per
  part (the share of the reference's parts whose part at the same place in the reply has the same
  kinds, or colours), which credits a reply that gets one part of two right; chance is the same
  comparison with the references shuffled among the prompts (what matching at random scores);
- Chamfer distance to the reference program's mesh, from sampled surface points, normalised by
  the reference's bounding-box diagonal: point-to-surface (samples of each mesh to the other's
  surface, averaged both ways) and point-to-point (nearest samples). A sampled estimate is never
  exactly 0: its noise floor is the same measure of the reference against itself resampled,
  reported beside it (point-to-surface has a floor of ~0 by construction; point-to-point's is
  the sample spacing).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from quark.errors import QuarkError
from quark.inputs import read_text_file
from quark.mesh.build import build_solid
from quark.mesh.program import Boolean, Program, parse_program_text

ATTRIBUTES = ("kinds", "count", "colors", "relation")
PER_PART = ("kinds", "colors")  # also scored part by part, as "<name>_per_part"


@dataclass(frozen=True)
class Case:
    prompt: str
    reference: Program


def held_out(seed: int = 0, val_fraction: float = 0.05, limit: int | None = None) -> list[Case]:
    """The val split that `quark data synth --kind mesh --seed S --val-fraction F` writes."""
    from quark.data.synth import in_validation
    from quark.mesh.synth import mesh_rows

    cases = [Case(row["messages"][0]["content"], parse_program_text(row["messages"][1]["content"]))
             for group, row in mesh_rows(seed) if in_validation(group, seed, val_fraction)]
    return cases[:limit] if limit else cases


def read_cases(path: Path, limit: int | None = None) -> list[Case]:
    """Cases from a chat JSONL file of (user prompt, assistant program) pairs, e.g. a synth val.jsonl."""
    cases = []
    for number, line in enumerate(read_text_file(path, "mesh cases").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
            prompt = next(m["content"] for m in messages if m["role"] == "user")
            program = next(m["content"] for m in messages if m["role"] == "assistant")
        except (ValueError, KeyError, TypeError, StopIteration):
            raise QuarkError(f"{path}:{number}: expected a chat row with a user prompt and an assistant "
                             "program") from None
        cases.append(Case(prompt, parse_program_text(program, f"{path}:{number}")))
    if not cases:
        raise QuarkError(f"{path}: no cases")
    return cases[:limit] if limit else cases


def _leaves_with_color(node, color: str | None) -> list[tuple[str, str | None]]:
    color = node.color or color
    if isinstance(node, Boolean):
        return [leaf for child in node.children for leaf in _leaves_with_color(child, color)]
    return [(node.type, color)]


def _relation(program: Program) -> str | None:
    if len(program.parts) < 2:
        return None
    a, b = (np.array(p.shape.translate or (0.0, 0.0, 0.0)) for p in program.parts[:2])
    delta = a - b
    axis = int(np.argmax(np.abs(delta)))
    if abs(delta[axis]) < 1e-9:
        return "overlapping"
    return [("left", "right"), ("front", "behind"), ("below", "above")][axis][int(delta[axis] > 0)]


def part_attributes(program: Program) -> list[dict]:
    """Per part, in order: its sorted primitive kinds and sorted colours (inherited colours included)."""
    out = []
    for part in program.parts:
        leaves = _leaves_with_color(part.shape, part.color)
        out.append({"kinds": sorted({kind for kind, _ in leaves}), "colors": sorted({c or "gray" for _, c in leaves})})
    return out


def per_part(reference: Program, candidate: Program | None, name: str) -> float:
    """The share of the reference's parts whose part at the same place in `candidate` has the same
    `name` (kinds or colours); a missing part counts as wrong (extra parts are the count's business)."""
    ours = part_attributes(candidate) if candidate is not None else []
    theirs = part_attributes(reference)
    return sum(i < len(ours) and ours[i][name] == want[name] for i, want in enumerate(theirs)) / len(theirs)


def attributes(program: Program) -> dict:
    """What adherence compares: sorted primitive kinds, primitive count, sorted colours, relation."""
    leaves = [leaf for part in program.parts for leaf in _leaves_with_color(part.shape, part.color)]
    return {"kinds": sorted({kind for kind, _ in leaves}), "count": len(leaves),
            "colors": sorted({color or "gray" for _, color in leaves}), "relation": _relation(program)}


def adherence(references: Sequence[Program], candidates: Sequence[Program | None]) -> dict[str, float | None]:
    """Per attribute, the share of cases whose candidate matches its reference (None: no candidate),
    and the per-part kinds and colours averaged over the cases. The relation counts only cases
    whose reference has two or more parts."""
    out: dict[str, float | None] = {}
    for name in ATTRIBUTES:
        scored = [(attributes(c)[name] == attributes(r)[name]) if c is not None else False
                  for r, c in zip(references, candidates) if attributes(r)[name] is not None]
        out[name] = round(sum(scored) / len(scored), 4) if scored else None
    for name in PER_PART:
        scores = [per_part(r, c, name) for r, c in zip(references, candidates)]
        out[f"{name}_per_part"] = round(sum(scores) / len(scores), 4) if scores else None
    return out


def _shuffled(items: Sequence, seed: int) -> list:
    """A permutation in which no item stays in place where that can be avoided."""
    order = list(range(len(items)))
    if len(order) > 1:
        rng = random.Random(seed)
        while any(i == j for i, j in enumerate(order)):
            rng.shuffle(order)
    return [items[j] for j in order]


def _samples(mesh: trimesh.Trimesh, n: int, seed: int) -> np.ndarray:
    points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(points)


def chamfer(candidate: trimesh.Trimesh, reference: trimesh.Trimesh, *, points: int = 1024, seed: int = 0) -> dict:
    """Symmetric sampled Chamfer distances (mean of both directions) over the reference's diagonal."""
    from scipy.spatial import cKDTree

    scale = float(np.linalg.norm(reference.extents)) or 1.0
    a, b = _samples(candidate, points, seed), _samples(reference, points, seed + 1)
    _, a_to_ref, _ = trimesh.proximity.closest_point(reference, a)
    _, b_to_cand, _ = trimesh.proximity.closest_point(candidate, b)
    p2p = (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2
    return {"p2s": float((a_to_ref.mean() + b_to_cand.mean()) / 2 / scale), "p2p": float(p2p / scale)}


def score(cases: Sequence[Case], replies: Sequence[str], *, seed: int = 0, points: int = 1024,
          on_case: Callable[[], None] | None = None) -> tuple[dict, list[dict]]:
    """Metrics over all cases, and one row per case (for --output)."""
    rows, programs, distances, floors = [], [], [], []
    for case, reply in zip(cases, replies):
        row: dict = {"prompt": case.prompt, "reply": reply, "valid": False, "built": False}
        try:
            program = parse_program_text(reply.strip(), "reply")
            row["valid"] = True
        except QuarkError as exc:
            program, row["error"] = None, str(exc)
        reference_mesh = build_solid(case.reference).mesh
        floor = chamfer(reference_mesh, reference_mesh, points=points, seed=seed + 7)
        floors.append(floor)
        if program is not None:
            try:
                mesh = build_solid(program).mesh
                row["built"] = True
                row["chamfer"] = chamfer(mesh, reference_mesh, points=points, seed=seed)
                distances.append(row["chamfer"])
            except QuarkError as exc:
                row["error"] = str(exc)
        row["attributes"] = attributes(program) if program is not None else None
        row["reference_attributes"] = attributes(case.reference)
        programs.append(program)
        rows.append(row)
        if on_case:
            on_case()
    references = [c.reference for c in cases]
    n = len(cases)

    def mean(values: list[dict], key: str) -> float | None:
        return round(float(np.mean([v[key] for v in values])), 6) if values else None

    metrics = {
        "cases": n, "valid": round(sum(r["valid"] for r in rows) / n, 4),
        "built": round(sum(r["built"] for r in rows) / n, 4),
        "adherence": adherence(references, programs), "chance": adherence(references, _shuffled(references, seed)),
        "chamfer_p2s": mean(distances, "p2s"), "chamfer_p2s_floor": mean(floors, "p2s"),
        "chamfer_p2p": mean(distances, "p2p"), "chamfer_p2p_floor": mean(floors, "p2p"),
        "chamfer_cases": len(distances), "points": points,
    }
    return metrics, rows
