"""A tiny model that has learnt one scene program, for the tests of the front ends that make
meshes (`/mesh` in chat, the generate_mesh tool, `/v1/meshes`).

A random model under the scene-program grammar writes valid JSON but may not finish it within a
test's token budget; this one (the tiny test model, fully fine-tuned for a few seconds by the real
`quark finetune sft` on one prompt → program pair) writes the program greedily, so the tests see
a whole asset made and can check its faces, preview and row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

PROMPT = "a red ball"
PROGRAM = {"parts": [{"name": "ball", "color": "red", "shape": {"type": "sphere", "radius": 1.0}}], "segments": 16}
MODEL = "ball"


@pytest.fixture(scope="session")
def mesh_model_home(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with `tiny` (random) and `ball` (`tiny` taught PROMPT → PROGRAM). Copy it before mutating."""
    from conftest import Quark
    from quark.mesh.program import parse_program

    home = tmp_path_factory.mktemp("mesh-home")
    shutil.copytree(tiny_model_home, home, dirs_exist_ok=True)
    pair = {"messages": [{"role": "user", "content": PROMPT},
                         {"role": "assistant", "content": parse_program(PROGRAM).to_json()}]}
    data = home / "ball.jsonl"
    data.write_text("\n".join(json.dumps(pair) for _ in range(8)) + "\n")
    Quark(home)("finetune", "sft", "--model", "tiny", "--data", data, "--val", data, "--name", MODEL,
                "--max-steps", "120", "--set", "optim.lr=1e-2", "--set", "optim.warmup=0",
                "--set", "train.micro_batch=4",
                "--set", "train.seq_len=128", "--set", "train.eval_every=0", "--set", "train.save_every=120",
                "--set", "train.sample_tokens=0")
    return home
