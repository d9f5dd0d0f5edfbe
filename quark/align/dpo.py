"""Direct preference optimisation (Rafailov et al., 2023) through the shared Trainer.

The reference model is the policy as it starts (a copy would be frozen anyway), so its
log-probabilities of every chosen and rejected reply are computed once, before the first step,
in the training forward's precision, and travel with the batches: no second model in memory and
no second forward per step. Per pair,

    loss = -log σ(β · ((log π(c) − log π(r)) − (log ref(c) − log ref(r))))

summed over pairs (the Trainer divides by their number). Each evaluation reports the held-out
margin (the bracket above, averaged; 0 before training, above 0 once the policy favours the
chosen replies more than the reference did) and the fraction of held-out pairs it ranks right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from quark.align.batches import PairBatches
from quark.align.data import read_pairs
from quark.align.policy import load_policy
from quark.align.run import Context, Job, run
from quark.home import Home
from quark.models.llm import IGNORE_INDEX
from quark.progress import progress_bar
from quark.train.trainer import autocast, compute_dtype


def sequence_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of log p(token) over each row's labelled tokens (the reply and its <|end|>): (rows,)."""
    logits = model(batch["input_ids"])
    labels = batch["labels"]
    nll = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return -nll.view(labels.shape).sum(-1)


def margins(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(log π(c) − ref(c)) − (log π(r) − ref(r)) per pair; rows alternate chosen, rejected."""
    logps = sequence_logps(model, batch)
    ref = batch["ref"]
    return (logps[0::2] - ref[:, 0]) - (logps[1::2] - ref[:, 1])


def dpo_loss(beta: float) -> Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        m = margins(model, batch)
        return -F.logsigmoid(beta * m).sum(), torch.tensor(m.numel(), device=m.device)
    return loss


@torch.no_grad()
def reference_logps(model: nn.Module, pairs: PairBatches, batch_pairs: int, device: torch.device,
                    dtype: torch.dtype, progress: bool) -> torch.Tensor:
    """(pairs, 2) log-probabilities of each chosen and rejected reply under `model`, as it is now."""
    was_training = model.training
    model.eval().to(device)
    out = torch.empty(len(pairs), 2, dtype=torch.float64)
    bar = progress_bar(enabled=progress)
    with bar:
        task = bar.add_task("reference log-probs", total=len(pairs), unit="pairs")
        for start in range(0, len(pairs), batch_pairs):
            index = list(range(start, min(start + batch_pairs, len(pairs))))
            batch = {k: v.to(device) for k, v in pairs.rows(index).items()}
            with autocast(dtype, device):
                out[index] = sequence_logps(model, batch).double().cpu().view(-1, 2)
            bar.update(task, completed=index[-1] + 1)
    model.train(was_training)
    return out


def _held_out_margin(val: PairBatches, batch_pairs: int) -> Callable[[nn.Module], dict[str, Any]]:
    def check(model: nn.Module) -> dict[str, Any]:
        device = next(model.parameters()).device
        found = []
        for start in range(0, len(val), batch_pairs):
            batch = {k: v.to(device) for k, v in val.rows(range(start, min(start + batch_pairs, len(val)))).items()}
            found.append(margins(model, batch).double().cpu())
        m = torch.cat(found)
        return {"val_margin": float(m.mean()), "val_pair_accuracy": float((m > 0).double().mean())}
    return check


def build(ctx: Context) -> Job:
    t, tok = ctx.recipe.train, ctx.tokenizer
    train = PairBatches(tok, read_pairs(ctx.data.train), t.seq_len, seed=t.seed, what=str(ctx.data.train))
    val = PairBatches(tok, read_pairs(ctx.data.val), t.seq_len, seed=None,
                      what=str(ctx.data.val)) if ctx.data.val else None
    model, publish = load_policy(ctx)
    dtype = compute_dtype(t, ctx.env.device)
    show = ctx.env.is_main and ctx.progress
    for pairs in filter(None, (train, val)):
        pairs.extra["ref"] = reference_logps(model, pairs, t.micro_batch, ctx.env.device, dtype, show).float()
    info = {"train_pairs": len(train), "train_skipped": train.skipped, "beta": ctx.recipe.dpo.beta}
    if val is not None:
        info.update(val_pairs=len(val), val_skipped=val.skipped)
    return Job(model, train, dpo_loss(ctx.recipe.dpo.beta), publish, val=val,
               val_samples=min(t.eval_windows, len(val)) if val else 0,
               on_eval=_held_out_margin(val, t.micro_batch) if val else None, info=info)


def dpo(home: Home, *, name: str, **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune dpo`: see quark.align.run.run for the arguments."""
    return run(home, "dpo", build, name=name, **kwargs)
