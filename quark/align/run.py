"""One alignment run, whatever its kind: resolve inputs, train through the shared Trainer, publish.

    runs/<name>/run.json       kind, base model and data files, written once
    runs/<name>/recipe.yaml    the resolved recipe; `--resume` reads it back
    runs/<name>/step-NNNNNN/   checkpoints; runs/<name>/metrics.jsonl
    models/<name>/             a full fine-tune or a reward model, with card.md
    models/<base>/adapters/<name>/  a LoRA adapter (PEFT layout), with card.md

A kind (sft, dpo, reward, distill, ppo) supplies a `build` function that reads its data, loads the model to
train and returns a Job: the Trainer's model, data and loss, an evaluation hook, and how to
publish the final checkpoint. Every process of a torchrun job runs this same code, as in
pretraining; process 0 alone writes files and quark.db rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml
from pydantic import BaseModel

from quark import db
from quark.align.data import DataFiles, resolve_data
from quark.align.recipe import AlignRecipe, load_align_recipe
from quark.atomic import atomic_dir
from quark.device import resolve_device
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import load_tokenizer, read_config
from quark.modelfolder.adapters import adapter_dir
from quark.models.llm import LLMConfig
from quark.tokenizer import Tokenizer
from quark.train import checkpoint
from quark.train.dist import Dist, setup, teardown
from quark.train.trainer import Batches, LossFn, Trainer, fit_run


@dataclass
class Context:
    """What a kind's build function gets: the resolved run, the base model's shape and tokenizer."""

    home: Home
    name: str
    base: str
    base_folder: Path
    config: LLMConfig
    tokenizer: Tokenizer
    recipe: AlignRecipe
    data: DataFiles
    env: Dist
    progress: bool = True


@dataclass
class Job:
    """A kind's training job. `publish(checkpoint, folder)` writes the result from the final
    checkpoint into a temporary folder that then replaces the output in one rename; `info` holds
    data figures (examples, pairs, left-out counts) for the summary and card."""

    model: nn.Module
    train: Batches
    loss_fn: LossFn
    publish: Callable[[Path, Path], None]
    val: Batches | None = None
    val_samples: int = 0
    on_eval: Callable[[nn.Module], dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    step_fields: Callable[[], dict[str, float]] | None = None  # per-step figures for metrics.jsonl and the bar


class RecordedData(BaseModel):
    """run.json's "data": the JSONL files a run trains (and validates) on."""

    train: str
    val: str | None = None


DataResolver = Callable[[Home, str, "str | None"], DataFiles]


def _resolve(home: Home, kind: str, name: str, base: str | None, data: str | None, val: str | None,
             recipe: str | None, overrides: list[str], resume: bool,
             resolve: DataResolver = resolve_data) -> tuple[AlignRecipe, str, DataFiles]:
    """The recipe, base model and data of a run: given for a new run, read back for --resume."""
    run_dir = home.run_dir(name)
    if resume:
        recorded = checkpoint.read_run_info(run_dir, {"kind": str, "base": str, "data": RecordedData})
        if recorded.get("kind") != kind:
            raise QuarkError(f"run {name!r} is a {recorded.get('kind')} run, not {kind}")
        if recipe:
            raise QuarkError(f"--resume continues run {name!r} with the recipe in {run_dir / 'recipe.yaml'}; "
                             "drop --recipe (change single values with --set or --max-steps)")
        if base and base != recorded["base"]:
            raise QuarkError(f"run {name!r} fine-tunes model {recorded['base']!r}, not {base!r}")
        files = DataFiles(Path(recorded["data"]["train"]),
                          Path(recorded["data"]["val"]) if recorded["data"]["val"] else None)
        if data and resolve(home, data, val) != files:
            raise QuarkError(f"run {name!r} trains on {files.train}, not {data!r}")
        return load_align_recipe(kind, str(run_dir / "recipe.yaml"), overrides), recorded["base"], files
    if not base or not data:
        raise QuarkError("a new run needs --model and --data (or --resume to continue an existing run)")
    if (run_dir / "run.json").exists():  # a folder without run.json is a run killed before it started
        raise QuarkError(f"run {name!r} already exists ({run_dir}): add --resume to continue it, or pick another "
                         "--name")
    return load_align_recipe(kind, recipe or kind, overrides), base, resolve(home, data, val)


def recorded_value(home: Home, name: str, section: str, key: str) -> Any:
    """A value of run `name`'s saved recipe (None when the run or the value is not there): what a
    resumed run checks a repeated option against (distillation's teacher, PPO's reward model)."""
    path = home.run_dir(name) / "recipe.yaml"
    if not path.is_file():
        return None
    recorded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return (recorded.get(section) or {}).get(key) if isinstance(recorded, dict) else None


def output_of(home: Home, base: str, name: str, recipe: AlignRecipe) -> Path:
    """Where the result goes: an adapter beside its base, or a model folder of its own."""
    return adapter_dir(home.model_dir(base), name) if recipe.lora.enabled else home.model_dir(name)


def run(home: Home, kind: str, build: Callable[[Context], Job], *, name: str, base: str | None = None,
        data: str | None = None, val: str | None = None, recipe: str | None = None, overrides: list[str] = (),
        resume: bool = False, progress: bool = True, log: Callable[[str], None] | None = None,
        resolve: DataResolver = resolve_data) -> dict[str, Any] | None:
    """Run (or resume) an alignment run of `kind`; returns its summary on process 0, None elsewhere.
    `resolve` turns --data into files (JSONL by default; distillation reads a token set)."""
    resolved, base, files = _resolve(home, kind, name, base, data, val, recipe, list(overrides), resume, resolve)
    base_folder = home.existing(home.model_dir(base), "model")
    config = read_config(base_folder)
    t = resolved.train
    if t.seq_len > config.max_seq_len:
        raise QuarkError(f"train.seq_len {t.seq_len} exceeds model {base!r}'s context of {config.max_seq_len} tokens")
    if resolved.lora.qlora:
        from quark.align.lora import check_qlora

        check_qlora(resolve_device(t.device, what="train.device"))
    output = output_of(home, base, name, resolved)
    if output.exists() and not resume:  # a resumed run replaces what it published before
        raise QuarkError(f"{output} already exists: pick another --name")
    run_dir = home.run_dir(name)

    env = setup(t.device)
    try:
        checkpoint.seed_everything(t.seed)
        ctx = Context(home, name, base, base_folder, config, load_tokenizer(base_folder), resolved, files, env,
                      progress)
        job = build(ctx)
        conn = None
        if env.is_main:
            checkpoint.start_run_dir(run_dir, resume=resume, recipe_yaml=resolved.to_yaml(), info={
                "kind": kind, "base": base, "data": files.to_dict(), "output": str(output), "created": now()})
            conn = db.connect(home.db_path)
            db.record_run(conn, name, kind, base, {"recipe": resolved.to_dict(), "base": base,
                                                   "data": files.to_dict(), **job.info})
        with db.run_outcome(conn, name):
            env.barrier()
            trainer = Trainer(job.model, resolved.optim, t, job.train, env=env, run_dir=run_dir, loss_fn=job.loss_fn,
                              val=job.val, val_samples=job.val_samples, on_eval=job.on_eval, progress=progress,
                              label=kind, step_fields=job.step_fields)
            summary, resumed = fit_run(trainer, run_dir, resume=resume, conn=conn, name=name, log=log)
            if not env.is_main:
                env.done()
                return None
            scores = {k: v for k, v in trainer.evaluation.items() if isinstance(v, (int, float))}
            summary = {"run": name, "kind": kind, "base": base, "data": files.to_dict(), **job.info, **summary,
                       **scores,
                       "resumed_from": str(resumed) if resumed else None, "output": str(output),
                       "adapter": resolved.lora.enabled}
            with atomic_dir(output) as tmp:
                job.publish(checkpoint.checkpoints(run_dir)[-1], tmp)
                (tmp / "card.md").write_text(card(summary, resolved), encoding="utf-8")
            db.finish_run(conn, name, "finished", summary)
            env.done()
            return summary
    finally:
        teardown()


def card(summary: dict[str, Any], recipe: AlignRecipe) -> str:
    """card.md: what the result was trained from, on what, and how well it did on held-out data."""
    what = {"sft": "Supervised fine-tune (loss on assistant tokens only)",
            "dpo": "Direct preference optimisation", "reward": "Reward model (Bradley–Terry)",
            "embed": "Embedding model (contrastive head, InfoNCE with in-batch and hard negatives)",
            "rerank": "Reranker (grounding head: supported passages over hard negatives and corrupted twins)",
            "distill": "Distilled student (KL to the teacher's logits)",
            "ppo": "PPO policy (clipped policy and value losses against a reward model, KL penalty to the "
                   "starting policy; value head in value_head.safetensors)"}[summary["kind"]]
    how = " as a LoRA adapter" + (" (QLoRA, NF4 base)" if recipe.lora.qlora else "") if recipe.lora.enabled else ""
    rows = [("base model", f"`{summary['base']}`"), ("train data", f"`{summary['data']['train']}`"),
            ("held-out data", f"`{summary['data']['val']}`" if summary["data"]["val"] else "none"),
            ("steps", f"{summary['steps']:,}"), ("tokens seen", f"{summary['tokens']:,}")]
    for key, value in summary.items():
        if key.startswith(("train_", "val_")) and isinstance(value, (int, float)) and key != "train_time_s":
            rows.append((key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else f"{value:,}"))
    table = "".join(f"| {k} | {v} |\n" for k, v in rows)
    return (f"# {summary['run']}\n\n{what}{how} of `{summary['base']}` by `quark finetune {summary['kind']}` "
            f"(run `runs/{summary['run']}/`).\n\n| | |\n|---|---|\n{table}\n## "
            f"Recipe\n\n```yaml\n{recipe.to_yaml()}```\n")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
