"""`quark pretrain`: a token set and a recipe in, a resumable run and a published model out.

    tokens/<data>/            packed train/val shards; meta.json names the tokenizer
    runs/<name>/run.json      what the run trains on (data, tokenizer, model), written once
    runs/<name>/recipe.yaml   the resolved recipe; `--resume` reads it back
    runs/<name>/step-NNNNNN/  checkpoints (quark.train.checkpoint)
    runs/<name>/metrics.jsonl one line per step and per evaluation
    models/<name>/            the published model folder with card.md, written when the run ends

Every process of a torchrun job runs this same function: all of them check the inputs (so a bad
input fails everywhere alike), process 0 alone writes files and quark.db rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from quark import db
from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import save_model
from quark.modelfolder.flops import flops_per_token, parameter_counts
from quark.models.llm import LLM, KVCache, LLMConfig
from quark.tokenizer import Tokenizer
from quark.tokenizer.token_shards import TokenSet
from quark.train import checkpoint
from quark.train.data import TokenWindows
from quark.train.dist import setup, teardown
from quark.train.recipe import Recipe, load_recipe
from quark.train.trainer import Trainer, fit_run

SAMPLE_PROMPT_TOKENS = 8


def _resolve(home: Home, name: str, recipe: str | None, data: str | None, overrides: list[str],
             resume: bool) -> tuple[Recipe, str]:
    """The recipe and token set a run trains on: given for a new run, read back for --resume."""
    run_dir, model_dir = home.run_dir(name), home.model_dir(name)
    if resume:
        if recipe:
            raise QuarkError(f"--resume continues run {name!r} with the recipe in {run_dir / 'recipe.yaml'}; "
                             "drop --recipe (change single values with --set or --max-steps)")
        recorded = checkpoint.read_run_info(run_dir, {"data": str})["data"]
        if data and data != recorded:
            raise QuarkError(f"run {name!r} trains on token set {recorded!r}, not {data!r}")
        return load_recipe(run_dir / "recipe.yaml", overrides), recorded
    if not recipe or not data:
        raise QuarkError("a new run needs --recipe and --data (or --resume to continue an existing run)")
    if (run_dir / "run.json").exists():  # a folder without run.json is a run killed before it started
        raise QuarkError(f"run {name!r} already exists ({run_dir}): add --resume to continue it, or pick another "
                         "--name")
    if model_dir.exists():
        raise QuarkError(f"model {name!r} already exists ({model_dir}): pick another --name")
    return load_recipe(recipe, overrides), data


def _tokenizer_of(home: Home, tokens: TokenSet) -> tuple[str, Path]:
    name = tokens.meta.get("tokenizer")
    if isinstance(name, dict):  # `quark tokenize encode` records {"name", "sha256"}
        name = name.get("name")
    if not name:
        raise QuarkError(f"{tokens.folder / 'meta.json'} names no tokenizer (key 'tokenizer')")
    path = home.tokenizer_dir(name) / "tokenizer.model"
    if not path.is_file():
        raise QuarkError(f"token set {tokens.folder.name!r} was made with tokenizer {name!r}, but {path} is missing")
    return name, path


@torch.no_grad()
def _greedy(model: LLM, prompt: list[int], count: int) -> list[int]:
    """A few greedy tokens with a KV cache: training's sample, not an inference engine."""
    count = min(count, model.config.max_seq_len - len(prompt))
    device = model.embed_tokens.weight.device
    cache = KVCache.empty(model.config, 1, len(prompt) + count, device, torch.float32)
    logits = model(torch.tensor([prompt], device=device), cache=cache)
    out: list[int] = []
    for i in range(count):
        out.append(int(logits[0, -1].argmax()))
        if i + 1 < count:
            logits = model(torch.tensor([[out[-1]]], device=device), cache=cache)
    return out


def _sampler(tokenizer: Tokenizer, prompt: list[int], count: int) -> Callable[[nn.Module], dict[str, Any]]:
    def sample(model: nn.Module) -> dict[str, Any]:
        return {"sample": tokenizer.decode(prompt + _greedy(model, prompt, count))}
    return sample


def _card(name: str, data: str, tokenizer: str, tokens: TokenSet, recipe: Recipe, counts: dict, summary: dict) -> str:
    def loss(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    return (f"# {name}\n\nPretrained from scratch by `quark pretrain` (run `runs/{name}/`).\n\n"
            f"| | |\n|---|---|\n"
            f"| parameters | {counts['parameters']:,} ({counts['non_embedding_parameters']:,} non-embedding) |\n"
            f"| data | token set `{data}`: {tokens.num_tokens('train'):,} train / {tokens.num_tokens('val'):,} val "
            "tokens |\n"
            f"| tokenizer | `{tokenizer}` ({tokens.vocab_size:,} ids used) |\n"
            f"| steps | {summary['steps']:,} |\n| tokens seen | {summary['tokens']:,} |\n"
            f"| final train loss | {loss(summary['train_loss'])} |\n| final val loss | {loss(summary['val_loss'])} "
            "|\n\n"
            f"## Recipe\n\n```yaml\n{recipe.to_yaml()}```\n")


def _publish(home: Home, name: str, run_dir: Path, cfg: LLMConfig, tokenizer_path: Path, extra: dict,
             card: str) -> Path:
    """models/<name>/ from the run's final checkpoint, in one rename."""
    model = checkpoint.load_llm(checkpoint.checkpoints(run_dir)[-1], cfg)
    with atomic_dir(home.model_dir(name)) as tmp:
        save_model(tmp, model, tokenizer_path, extra_config=extra)
        (tmp / "card.md").write_text(card, encoding="utf-8")
    return home.model_dir(name)


def pretrain(home: Home, *, name: str, recipe: str | None = None, data: str | None = None,
             overrides: list[str] = (), resume: bool = False, progress: bool = True,
             log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Run (or resume) a pretraining run; returns its summary on process 0, None elsewhere."""
    resolved, data = _resolve(home, name, recipe, data, list(overrides), resume)
    t = resolved.train
    tokens = TokenSet.open(home.existing(home.tokens_dir(data), "token set"))
    tokenizer_name, tokenizer_path = _tokenizer_of(home, tokens)
    tokenizer = Tokenizer.load(tokenizer_path)
    cfg = resolved.model.config(tokenizer.vocab_size)
    if tokens.vocab_size > cfg.vocab_size:
        raise QuarkError(f"token set {data!r} has vocab_size {tokens.vocab_size}, more than its tokenizer's "
                         f"{cfg.vocab_size}")
    train_data = TokenWindows(tokens.shards["train"], t.seq_len, seed=t.seed, what=f"token set {data!r} (train)")
    val_data, prompt = None, []
    if tokens.num_tokens("val") > t.seq_len:
        val_data = TokenWindows(tokens.shards["val"], t.seq_len, what=f"token set {data!r} (val)")
        prompt = [int(i) for i in val_data.read(0, SAMPLE_PROMPT_TOKENS)]
    run_dir = home.run_dir(name)

    env = setup(t.device)
    try:
        checkpoint.seed_everything(t.seed)
        model = LLM(cfg)
        counts = parameter_counts(model)
        conn = None
        if env.is_main:
            checkpoint.start_run_dir(run_dir, resume=resume, recipe_yaml=resolved.to_yaml(), info={
                "kind": "pretrain", "data": data, "tokenizer": tokenizer_name, "model": name, "created": _now()})
            conn = db.connect(home.db_path)
            db.record_run(conn, name, "pretrain", name, {"recipe": resolved.to_dict(), "data": data,
                                                          "tokenizer": tokenizer_name, **counts})
        with db.run_outcome(conn, name):
            env.barrier()
            trainer = Trainer(model, resolved.optim, t, train_data, env=env, run_dir=run_dir, val=val_data,
                              val_samples=min(t.eval_windows, val_data.windows_per_epoch) if val_data else 0,
                              on_eval=(_sampler(tokenizer, prompt, t.sample_tokens)
                                       if prompt and t.sample_tokens else None),
                              flops_per_token=flops_per_token(cfg, counts, t.seq_len), progress=progress)
            summary, resumed = fit_run(trainer, run_dir, resume=resume, conn=conn, name=name, log=log)
            if not env.is_main:
                env.done()
                return None
            summary = {"run": name, "model": name, "data": data, **counts, **summary,
                       "resumed_from": str(resumed) if resumed else None}
            card = _card(name, data, tokenizer_name, tokens, resolved, counts, summary)
            extra = {"source_run": name, "created": _now(), "data": data, "tokenizer": tokenizer_name}
            summary["model_dir"] = str(_publish(home, name, run_dir, cfg, tokenizer_path, extra, card))
            db.finish_run(conn, name, "finished", summary)
            env.done()
            return summary
    finally:
        teardown()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
