"""The training loop, written once: pretraining drives it today; SFT, DPO and reward models reuse it.

A Trainer takes a model, the `optim` and `train` sections of a recipe, a source of batches and a
loss function:

    data.take(start, count) -> dict of tensors      samples [start, start+count) of a deterministic
                                                    sequence (see quark.train.data.TokenWindows)
    loss_fn(model, batch) -> (loss_sum, count)      a summed loss and how many items it sums over

The step's loss is Σ loss_sum / Σ count over every micro-batch of every process, so the gradient
is the same whether a global batch runs in one process, accumulated, or spread over many; and a
loss over masked tokens (SFT) or pairs (DPO) is weighted per item, not per micro-batch. The loop
does gradient accumulation, clipping, AdamW with a warm-up + cosine/WSD schedule, bf16 autocast on
CUDA, DDP/FSDP2 under torchrun, checkpoints every N steps (resumable under another world size),
validation and an `on_eval` hook (pretraining prints a greedy sample), an `on_step` hook after each optimizer step
(the image model's EMA), a `step_fields` hook whose figures join each step's metrics.jsonl entry (the
first BAR_FIELDS of them the progress bar too: PPO's reward, KL, clip fraction…), metrics.jsonl and the
progress bar with loss, tokens/s (or `items`/s in another `unit`), MFU and ETA.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from quark import db
from quark.atomic import write_text
from quark.modelfolder.flops import peak_flops
from quark.models.llm import IGNORE_INDEX
from quark.progress import progress_bar
from quark.train import checkpoint
from quark.train.dist import Dist, grad_sync, unwrap, wrap
from quark.train.loggers import RunLogs
from quark.train.recipe import OptimConfig, TrainConfig


class Batches(Protocol):
    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        """Samples [start, start + count): the same tensors every time they are asked for."""


BAR_FIELDS = 5  # of a step_fields hook's figures, how many the progress bar shows (metrics.jsonl has all)

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def batch_tokens(batch: dict[str, torch.Tensor]) -> int:
    """The tokens a language-model batch holds (the progress bar's rate and `tokens` in metrics)."""
    return batch["input_ids"].numel()


def causal_lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over labels that are not IGNORE_INDEX, and their number.
    A batch of packed examples may carry `segments` (attention kept inside each example)."""
    segments = batch.get("segments")
    logits = model(batch["input_ids"]) if segments is None else model(batch["input_ids"], segments=segments)
    labels = batch["labels"]
    loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, (labels != IGNORE_INDEX).sum()


def build_optimizer(model: nn.Module, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; matrices decay, norms (1-D) do not. Fused kernels
    where the device has them."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": optim.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    kwargs = {"lr": optim.lr, "betas": optim.betas, "eps": optim.eps}
    try:
        return torch.optim.AdamW(groups, fused=device.type in ("cuda", "cpu"), **kwargs)
    except RuntimeError:  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, **kwargs)


def compute_dtype(train: TrainConfig, device: torch.device) -> torch.dtype:
    """bf16 autocast when asked for, or by default on CUDA; fp32 otherwise."""
    if train.dtype == "bfloat16" or (train.dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def autocast(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    """The training forward's precision context (also for passes that must match it, such as
    DPO's reference log-probabilities)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _has_tied_weights(model: nn.Module) -> bool:
    """Whether a parameter is shared under two names (a tied lm_head), stored once in checkpoints."""
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    return len(names) != len(list(model.parameters()))


class MetricsLog:
    """runs/<name>/metrics.jsonl: one JSON object per step (and per evaluation).

    On resume, entries past the checkpoint's step (written before the kill) are dropped, so the
    curve continues from where the checkpoint left it with no step twice.
    """

    def __init__(self, path: Path, *, through_step: int) -> None:
        self.path = Path(path)
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut short by a kill
                    continue
                if entry.get("step", 0) <= through_step:
                    kept.append(line)
        write_text(self.path, "".join(f"{line}\n" for line in kept))
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, entry: dict[str, Any]) -> None:
        self.handle.write(json.dumps(entry) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


class Trainer:
    """Trains `model` (not yet wrapped, on any device) to train.max_steps; see the module docstring.

    `val`/`val_samples`: a fixed validation set, split evenly over processes. `on_eval(model)` runs
    on every process after each validation (under FSDP every process must join the forward) and
    returns extra fields for the log, e.g. {"sample": text}; the latest evaluation's fields stay in
    `evaluation`. `flops_per_token` feeds the MFU; `label` names the task on the progress bar.
    """

    def __init__(self, model: nn.Module, optim: OptimConfig, train: TrainConfig, data: Batches, *, env: Dist,
                 run_dir: Path, loss_fn: LossFn = causal_lm_loss, val: Batches | None = None, val_samples: int = 0,
                 on_eval: Callable[[nn.Module], dict[str, Any]] | None = None, flops_per_token: float = 0.0,
                 progress: bool = True, label: str = "pretrain",
                 on_step: Callable[[nn.Module, int], None] | None = None,
                 items: Callable[[dict[str, torch.Tensor]], int] = batch_tokens, unit: str = "tok",
                 step_fields: Callable[[], dict[str, float]] | None = None) -> None:
        self.optim, self.train, self.data, self.env, self.run_dir = optim, train, data, env, Path(run_dir)
        self.loss_fn, self.val, self.on_eval, self.flops_per_token = loss_fn, val, on_eval, flops_per_token
        self.label = label  # the progress bar's task name
        # What a step processes, for the rate: tokens by default; an image model counts images.
        self.on_step, self.items, self.unit = on_step, items, unit
        # Figures of the step just taken beyond the loss (e.g. PPO's rollout reward and clip fraction).
        self.step_fields = step_fields
        # Whole val batches per process, the same number on each (FSDP needs every process in every forward).
        self.val_per_process = val_samples // env.world if val is not None else 0
        self.show_progress = progress and env.is_main
        self.shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.tied = _has_tied_weights(model)
        self.compute_dtype = compute_dtype(train, env.device)
        model.gradient_checkpointing = train.activation_checkpointing
        model.to(env.device)
        if train.compile:
            model.compile()
        self.model = wrap(model, train.strategy, env)
        self.optimizer = build_optimizer(self.model, optim, env.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: optim.lr_multiplier(step, train.max_steps))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.step = self.samples = self.tokens = 0
        self.last: dict[str, Any] = {}
        self.evaluation: dict[str, Any] = {}  # the latest evaluation's results (val_loss, on_eval's fields)

    # -- one optimizer step -------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.compute_dtype, self.env.device)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.env.device, non_blocking=True) for k, v in batch.items()}

    def _train_step(self) -> tuple[float, float, float, int]:
        """Forward/backward every micro-batch, reduce, clip, step. (loss, grad norm, lr, tokens)."""
        t, env = self.train, self.env
        if not self.model.training:  # a walk over every module: only after an evaluation switched it off
            self.model.train()
        totals = torch.zeros(2, dtype=torch.float64, device=env.device)
        tokens = 0
        for micro in range(t.grad_accum):
            start = self.samples + (micro * env.world + env.rank) * t.micro_batch
            batch = self._to_device(self.data.take(start, t.micro_batch))
            with grad_sync(self.model, micro == t.grad_accum - 1):
                with self._autocast():
                    loss_sum, count = self.loss_fn(self.model, batch)
                loss_sum.backward()
            totals[0] += loss_sum.detach()
            totals[1] += count
            tokens += self.items(batch)
        loss_total, count_total = env.all_reduce_sum(totals).tolist()
        # Processes average their gradients of summed losses; rescale to the mean over all items.
        scale = env.world / max(count_total, 1.0)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm) * scale
        clip = self.optim.grad_clip
        torch._foreach_mul_(grads, scale * (min(1.0, clip / (norm + 1e-6)) if clip > 0 else 1.0))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.on_step is not None:  # e.g. an EMA of the weights, kept inside the model so checkpoints hold it
            self.on_step(unwrap(self.model), self.step + 1)
        return loss_total / max(count_total, 1.0), norm, lr, tokens * env.world

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Validation loss over the fixed validation samples, then the on_eval hook."""
        result: dict[str, Any] = {}
        self.model.eval()
        if self.val_per_process:
            totals = torch.zeros(2, dtype=torch.float64, device=self.env.device)
            first = self.env.rank * self.val_per_process
            for start in range(first, first + self.val_per_process, self.train.micro_batch):
                count = min(self.train.micro_batch, first + self.val_per_process - start)
                with self._autocast():
                    loss_sum, n = self.loss_fn(self.model, self._to_device(self.val.take(start, count)))
                totals[0] += loss_sum
                totals[1] += n
            loss_total, count_total = self.env.all_reduce_sum(totals).tolist()
            result["val_loss"] = loss_total / max(count_total, 1.0)
        if self.on_eval is not None:
            result.update(self.on_eval(unwrap(self.model)))
        self.model.train()
        return result

    # -- checkpoints --------------------------------------------------------------------------

    def save(self) -> Path:
        state = {"step": self.step, "samples": self.samples, "tokens": self.tokens, "world_size": self.env.world,
                 "strategy": self.train.strategy, **self.last}
        checkpoint.save(self.run_dir, self.step, self.model, self.optimizer, self.scheduler, state,
                        tied=self.tied, keep_last=self.train.keep_last, env=self.env)
        return checkpoint.step_dir(self.run_dir, self.step)

    def restore(self, path: Path) -> None:
        state = checkpoint.load(path, self.model, self.optimizer, self.scheduler, self.shapes,
                                tied=self.tied, env=self.env)
        self.step, self.samples, self.tokens = state["step"], state["samples"], state["tokens"]
        self.last = {k: state[k] for k in ("loss", "val_loss") if k in state}

    # -- the loop -----------------------------------------------------------------------------

    def fit(self, resume_from: Path | None = None, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Train to train.max_steps (from a checkpoint when given); returns a summary."""
        if resume_from is not None:
            self.restore(resume_from)
        t, env = self.train, self.env
        metrics = RunLogs.open(MetricsLog(self.run_dir / "metrics.jsonl", through_step=self.step), t.loggers,
                               self.run_dir, self.step) if env.is_main else None
        peak, peak_source = peak_flops(env.device, self.compute_dtype) if env.is_main else (0.0, "")
        busy = 0.0
        tokens_at_start = self.tokens
        fields = f"loss {{task.fields[loss]}} · {{task.fields[tps]}} {self.unit}/s · MFU {{task.fields[mfu]}}"
        if self.step_fields is not None:
            fields += " · {task.fields[extra]}"
        bar = progress_bar(enabled=self.show_progress, fields=fields)
        quiet = lambda _: None  # noqa: E731
        say = bar.console.print if self.show_progress else (log if log and env.is_main else quiet)
        try:
            with bar:
                task = bar.add_task(self.label, total=t.max_steps, completed=self.step, unit="steps",
                                    loss="-", tps="-", mfu="-", extra="")
                while self.step < t.max_steps:
                    started = time.perf_counter()
                    loss, norm, lr, tokens = self._train_step()
                    elapsed = time.perf_counter() - started
                    busy += elapsed
                    self.step += 1
                    self.samples += t.micro_batch * t.grad_accum * env.world
                    self.tokens += tokens
                    self.last["loss"] = loss
                    tps = tokens / elapsed
                    mfu = self.flops_per_token * tps / (peak * env.world) if peak else float("nan")
                    extra = self.step_fields() if self.step_fields is not None else {}
                    if metrics:
                        metrics.write({"kind": "train", "step": self.step, "loss": loss, "lr": lr, "grad_norm": norm,
                                       "tokens": self.tokens, "tokens_per_s": tps, "mfu": mfu, **extra,
                                       "time": time.time()})
                    bar.update(task, completed=self.step, loss=_fmt(loss), tps=f"{tps:,.0f}", mfu=f"{mfu:.1%}",
                               extra=" · ".join(f"{k} {_fmt(v)}" for k, v in list(extra.items())[:BAR_FIELDS]))
                    final = self.step == t.max_steps
                    if (t.eval_every and self.step % t.eval_every == 0) or final:
                        result = self.evaluation = self.evaluate()
                        if "val_loss" in result:
                            self.last["val_loss"] = result["val_loss"]
                        if metrics and result:
                            metrics.write({"kind": "val", "step": self.step, **result})
                        if result:
                            say(f"step {self.step}: " + " · ".join(f"{k} {_fmt(v) if isinstance(v, float) else repr(v)}"
                                                                  for k, v in result.items()))
                    if (t.save_every and self.step % t.save_every == 0) or final:
                        say(f"checkpoint {self.save()}")
        finally:
            if metrics:
                metrics.close()
        seen = self.tokens - tokens_at_start
        mean_tps = seen / busy if busy else 0.0
        return {"steps": self.step, "tokens": self.tokens, "train_loss": self.last.get("loss"),
                "val_loss": self.last.get("val_loss"), "tokens_per_s": mean_tps,
                "mfu": self.flops_per_token * mean_tps / (peak * env.world) if peak and busy else None,
                "peak_flops": peak, "peak_flops_source": peak_source, "train_time_s": busy}


def fit_run(trainer: Trainer, run_dir: Path, *, resume: bool, conn: Any, name: str,
            log: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path | None]:
    """Fit, from the run's last checkpoint when resuming; returns (summary, checkpoint resumed).

    A failure or Ctrl-C marks the run's row in quark.db (rank 0 holds `conn`; others pass None)
    before it propagates, so `runs` never shows a dead run as running.
    """
    found = checkpoint.checkpoints(run_dir) if resume else []
    start = found[-1] if found else None
    with db.run_outcome(conn, name):
        return trainer.fit(start, log=log), start
