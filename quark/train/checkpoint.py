"""Resumable training state: `runs/<name>/step-NNNNNN/` (the step, six digits), written atomically, the last N kept.

A checkpoint holds full (unsharded) state dicts, gathered with torch.distributed.checkpoint's
get_model_state_dict/get_optimizer_state_dict (full_state_dict, cpu_offload), keyed by parameter
name. That makes it independent of how it was trained: a run saved under FSDP on 4 processes
resumes under DDP on 2, or in a single process.

    model.safetensors   weights (a tied lm_head stored once, as embed_tokens.weight)
    optimizer.pt        AdamW state and param groups
    rng.pt              python, numpy and torch (and CUDA) generator states, one per process
    state.json          step, data position, tokens seen, scheduler, world size, strategy
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from pydantic import ConfigDict, ValidationError, create_model
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from quark.atomic import atomic_dir, write_text
from quark.errors import QuarkError
from quark.inputs import MiB, pydantic_problem, read_json_file
from quark.modelfolder import check_state, load_state
from quark.models.llm import LLM, LLMConfig, rope_tables
from quark.train.dist import Dist

_STEP = re.compile(r"^step-(\d{6,})$")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
_TIED = "lm_head.weight"


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"step-{step:06d}"


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a checkpoint only appears once its rename is done)."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("step-*") if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def remove_partial(run_dir: Path) -> None:
    """Temporary folders a killed process left behind (atomic_dir cleans up after anything else)."""
    for tmp in Path(run_dir).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
         state: dict[str, Any], *, tied: bool, keep_last: int, env: Dist) -> None:
    """Gather full state on every process (a collective under FSDP); process 0 writes it."""
    weights = get_model_state_dict(model, options=_FULL)
    optim = get_optimizer_state_dict(model, optimizer, options=_FULL)
    rng = env.all_gather_object(_rng_state())
    if env.is_main:
        if tied:
            weights.pop(_TIED, None)
        with atomic_dir(step_dir(run_dir, step)) as tmp:
            save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
            torch.save(optim, tmp / "optimizer.pt")
            torch.save(rng, tmp / "rng.pt")
            (tmp / "state.json").write_text(json.dumps({**state, "scheduler": scheduler.state_dict()}, indent=2))
        for old in checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    env.barrier()


def load_weights(path: Path, shapes: dict[str, tuple[int, ...]], *, tied: bool) -> dict[str, torch.Tensor]:
    """A checkpoint's weights, refused unless every tensor matches the model being trained."""
    weights = load_state(Path(path) / "model.safetensors")
    if tied and "embed_tokens.weight" in weights:
        weights[_TIED] = weights["embed_tokens.weight"]
    check_state(weights, shapes, f"checkpoint {path} is from a different model shape")
    return weights


def load_llm(path: Path, cfg: LLMConfig) -> LLM:
    """The LLM saved in a checkpoint (on the CPU, as trained): what a finished run publishes."""
    with torch.device("meta"):
        model = LLM(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(load_weights(path, shapes, tied=cfg.tie_embeddings), assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.rope_cos, model.rope_sin = rope_tables(cfg)
    return model


def load(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
         shapes: dict[str, tuple[int, ...]], *, tied: bool, env: Dist) -> dict[str, Any]:
    """Restore a checkpoint into the (possibly wrapped) model; returns its state.json."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise QuarkError(f"checkpoint {path} is unreadable: {exc}") from None
    weights = load_weights(path, shapes, tied=tied)
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    set_optimizer_state_dict(model, optimizer, optim, options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(state["scheduler"])
    # The same process count restores each process's generators; another count takes rank 0's.
    _set_rng_state(rng[env.rank] if len(rng) == env.world else rng[0])
    return state


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: a run's initialisation and data order follow from its seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_run_info(run_dir: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """A run's run.json, checked before --resume trusts it: each of `fields` (name -> type, as
    pydantic takes it) must be there with that type; a problem names the file and the field."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise QuarkError(f"no run {Path(run_dir).name!r} to resume (no {path})")
    data = read_json_file(path, "run file", max_bytes=MiB)
    if not isinstance(data, dict):
        raise QuarkError(f"{path}: expected a JSON object, got {type(data).__name__}")
    model = create_model("RunInfo", __config__=ConfigDict(extra="allow", strict=True),
                         **{key: (kind, ...) for key, kind in fields.items()})
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise QuarkError(f"{path}: {pydantic_problem(exc)}") from None
    return data


def start_run_dir(run_dir: Path, *, resume: bool, info: dict[str, Any], recipe_yaml: str) -> None:
    """Prepare runs/<name>/ on rank 0: drop a half-written checkpoint, record the recipe the run
    runs with (recipe.yaml, every time) and what the run is (run.json, only when it starts).

    run.json goes last because it marks a run as started: `--resume` reads recipe.yaml, so a run
    killed between the two writes must look like one that never started, not like one that did
    without its recipe."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_partial(run_dir)
    write_text(run_dir / "recipe.yaml", recipe_yaml)
    if not resume:
        write_text(run_dir / "run.json", json.dumps(info, indent=2))
