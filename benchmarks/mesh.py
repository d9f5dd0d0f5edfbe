"""quark mesh speed: decimation overhead against fast-simplification itself, and where the time of
`mesh build` / `mesh generate` goes, stage by stage.

1. Simplify throughput: Quark's `decimate` (a Solid in, a Solid out, each face keeping its group)
   against calling `fast_simplification.simplify` directly on the same arrays, 80k → 8k faces, on
   a one-colour sphere (the `mesh simplify` case for a plain file) and on a two-colour one (where
   faces take their group from the nearest old face). Best of N interleaved rounds.
2. `mesh build` by stage for each shipped example: validate, build (manifold3d), repair,
   decimate, export (GLB, in memory and written), render (512² preview, Embree), through the same
   pipeline the command runs, into a temporary home.
3. `mesh generate` by stage: the LLM stage samples exactly as many tokens as the reference
   program's JSON takes with the `tiny` preset's shape (random weights: speed does not depend on
   what the weights say; EOS ignored), then the reference program goes through the stages above.

    python benchmarks/mesh.py            # print
    python benchmarks/mesh.py --write    # also record under benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time

import fast_simplification
import numpy as np
import trimesh
from _common import machine, preset_engine  # benchmarks/_common.py
from _results import write_section  # benchmarks/_results.py

from quark.home import Home
from quark.inference import SamplingParams
from quark.mesh.build import build_solid
from quark.mesh.decimate import decimate
from quark.mesh.generate import messages_for
from quark.mesh.pipeline import Timings, write_asset
from quark.mesh.program import example_names, load_example
from quark.mesh.solid import Group, Solid

SECTION = "## Mesh"


def simplify_rounds(solid: Solid, target: int, rounds: int) -> dict:
    vertices = np.asarray(solid.mesh.vertices, dtype=np.float32)
    faces = np.asarray(solid.mesh.faces, dtype=np.int32)
    reduction = 1 - target / len(faces)
    direct, quark = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        fast_simplification.simplify(vertices, faces, target_reduction=reduction)
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = decimate(solid, target_faces=target)
        quark.append(time.perf_counter() - start)
    n = len(faces)
    return {"faces": n, "kept": len(out.mesh.faces), "watertight": bool(out.mesh.is_watertight),
            "direct": n / min(direct), "quark": n / min(quark), "ratio": min(direct) / min(quark)}


def build_stages(name: str, faces: int | None, home: Home) -> dict:
    timings = Timings()
    with timings.stage("validate"):
        program = load_example(name)
    with timings.stage("build"):
        solid = build_solid(program)
    result = write_asset(home, program, solid, out=None, fmt="glb", faces=faces, preview=True, timings=timings)
    return {"example": name, "faces_built": result["faces_built"], "faces": result["faces"], **timings.seconds}


def llm_seconds(name: str) -> tuple[int, float]:
    engine = preset_engine("tiny")
    text = load_example(name).to_json()
    prompt = engine.chat_prompt(messages_for(f"a {name}"))
    tokens = len(engine.tokenizer.encode(text))
    start = time.perf_counter()
    engine.generate([prompt], SamplingParams(max_tokens=tokens, temperature=0.0))
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    sphere = trimesh.creation.icosphere(subdivisions=6)
    plain = Solid.single(sphere, Group("ball", (200, 40, 40, 255)))
    halves = (sphere.triangles_center[:, 2] > 0).astype(np.int64)
    two = Solid(sphere, halves, [Group("ball", (200, 40, 40, 255)), Group("ball", (40, 90, 200, 255))])
    simplify = {"one colour": simplify_rounds(plain, 8192, args.rounds),
                "two colours": simplify_rounds(two, 8192, args.rounds)}

    stage_names = ("validate", "build", "repair", "decimate", "export", "render")
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.open(tmp)
        builds = [build_stages(name, 1000, home) for name in example_names()]
        generate = {**build_stages("mug", 1000, home)}
    tokens, llm = llm_seconds("mug")
    generate["llm"] = round(llm, 4)

    lines = [SECTION, "",
             f"`python benchmarks/mesh.py --write` — {dt.date.today().isoformat()}, 2-core CPU, shared "
             f"({machine()}); trimesh {trimesh.__version__}, fast-simplification "
             f"{fast_simplification.__version__}.", "",
             "### Simplify throughput (icosphere, 81,920 → 8,192 faces, best of "
             f"{args.rounds} interleaved rounds)", "",
             "| mesh | kept faces | watertight | fast-simplification faces/s | Quark `decimate` faces/s | **ratio** |",
             "|---|---:|---|---:|---:|---:|"]
    for label, r in simplify.items():
        lines.append(f"| {label} | {r['kept']:,} | {r['watertight']} | {r['direct']:,.0f} | {r['quark']:,.0f} | "
                     f"**{r['ratio']:.3f}** |")
    lines += ["", "### `mesh build --example NAME --faces 1000` by stage (seconds)", "",
              "| example | faces built | faces | " + " | ".join(stage_names) + " | total |",
              "|---|---:|---:|" + "---:|" * (len(stage_names) + 1)]
    for b in builds:
        lines.append(f"| {b['example']} | {b['faces_built']:,} | {b['faces']:,} | "
                     + " | ".join(f"{b.get(s, 0):.3f}" for s in stage_names)
                     + f" | {sum(b.get(s, 0) for s in stage_names):.3f} |")
    total = llm + sum(generate.get(s, 0) for s in stage_names)
    lines += ["", f"### `mesh generate` by stage (seconds): mug, LLM = {tokens} tokens greedy with the `tiny` "
                  "preset", "",
              "| llm | " + " | ".join(stage_names) + " | total |", "|" + "---:|" * (len(stage_names) + 2),
              f"| {llm:.3f} | " + " | ".join(f"{generate.get(s, 0):.3f}" for s in stage_names)
              + f" | {total:.3f} |", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
