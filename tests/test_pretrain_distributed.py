"""torchrun on CPU (gloo): DDP and FSDP2 give the single-process losses at the same global batch, and
a checkpoint taken sharded over two processes resumes in one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _train_data import TINY, corpus_home, metrics, one_thread, token_home  # noqa: F401

STEPS = ["--recipe", "tiny-cpu", "--data", "code", *TINY, "--eval-every", "2", "--save-every", "2"]


def _launch(home: Path, *command: str) -> None:
    env = {**os.environ, "QUARK_HOME": str(home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _losses(home: Path, run: str) -> dict[tuple[str, int], float]:
    return {(kind, e["step"]): e["loss" if kind == "train" else "val_loss"]
            for kind in ("train", "val") for e in metrics(home, run, kind)}


@pytest.mark.slow
def test_ddp_and_fsdp_match_one_process_and_resume_across_world_sizes(token_home: Path, quark) -> None:
    # One process, 4 windows per step.
    quark("pretrain", "--name", "single", *STEPS, "--set", "train.micro_batch=4", "--max-steps", "6")
    single = _losses(token_home, "single")
    assert len(single) == 6 + 3

    # DDP: two processes × 2 windows, launched by `--nproc` (which runs torchrun itself).
    _launch(token_home, sys.executable, "-m", "quark", "pretrain", "--name", "ddp", *STEPS,
            "--set", "train.micro_batch=2", "--max-steps", "6", "--nproc", "2", "--strategy", "ddp")
    ddp = _losses(token_home, "ddp")
    assert ddp.keys() == single.keys()
    for key, loss in single.items():
        assert ddp[key] == pytest.approx(loss, abs=2e-5), key

    # FSDP2: two processes × 1 window × 2 accumulation steps, under torchrun directly; stop at step 4.
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    _launch(token_home, torchrun, "--standalone", "--nproc_per_node=2", "-m", "quark", "pretrain", "--name", "fsdp",
            *STEPS, "--set", "train.micro_batch=1", "--set", "train.grad_accum=2", "--max-steps", "4",
            "--strategy", "fsdp")
    fsdp = _losses(token_home, "fsdp")
    assert len(fsdp) == 4 + 2
    for key, loss in fsdp.items():
        assert loss == pytest.approx(single[key], abs=2e-5), key

    # The sharded checkpoint resumes in a single process (another world size and strategy).
    out = quark.json("pretrain", "--name", "fsdp", "--resume", "--max-steps", "6",
                     "--set", "train.micro_batch=4", "--set", "train.grad_accum=1", "--strategy", "ddp")
    assert out["resumed_from"].endswith("step-000004")
    resumed = _losses(token_home, "fsdp")
    assert resumed.keys() == single.keys()
    for key, loss in resumed.items():
        assert loss == pytest.approx(single[key], abs=2e-5), key
