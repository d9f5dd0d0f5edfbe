"""Distillation: a small student learns a big teacher's next-token distributions on a token set.

Per token the loss is

    alpha · CE(student, next token) + (1 − alpha) · T² · KL(softmax(teacher/T) ‖ softmax(student/T))

(Hinton et al.: the T² keeps the soft term's gradients on the scale of the hard one's as T
grows). The teacher is frozen and runs beside the student inside the loss, so nothing is
precomputed and a resumed run sees exactly the logits it would have seen. The logits are
compared id by id, so the two models must share one tokenizer; the run refuses otherwise.

Each evaluation reports, on the token set's `val` split, the student's next-token loss
(`val_ce`, comparable with the teacher's `teacher_val_ce` in the summary) and its KL to the
teacher at temperature 1 (`val_kl`). alpha = 1 trains the student alone on the same windows,
the baseline a distilled student is measured against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from quark.align.data import DataFiles
from quark.align.policy import load_policy
from quark.align.run import Context, Job, recorded_value, run
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import load_model, load_tokenizer, read_config
from quark.models.llm import IGNORE_INDEX
from quark.tokenizer.token_shards import TokenSet
from quark.train.data import TokenWindows


def resolve_token_set(home: Home, data: str, val: str | None = None) -> DataFiles:
    """--data as a token set: a name under tokens/ or a folder holding meta.json."""
    if val is not None:
        raise QuarkError("--val does not apply to distillation: the token set's val split is the held-out data")
    path = Path(data).expanduser()
    folder = path if (path / "meta.json").is_file() else home.tokens_dir(data)
    if not (folder / "meta.json").is_file():
        raise QuarkError(f"--data {data!r}: no token set {data!r} (no {folder / 'meta.json'}); make one with "
                         "quark tokenize encode")
    return DataFiles(folder.resolve(), None)


def token_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T ‖ student_T) per position, summed over the vocabulary."""
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1)


def distill_loss(teacher: nn.Module, alpha: float, temperature: float
                 ) -> Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """The Trainer's loss: summed per-token mix of CE and T²-scaled KL, and the token count."""
    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch["input_ids"]).float()
        labels = batch["labels"]
        mask = labels != IGNORE_INDEX
        total = logits.new_zeros(())
        if alpha > 0:
            ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
            total = total + alpha * ce
        if alpha < 1:
            with torch.no_grad():
                soft = teacher(batch["input_ids"])
            total = total + (1 - alpha) * temperature ** 2 * token_kl(soft, logits, temperature)[mask].sum()
        return total, mask.sum()
    return loss


@torch.no_grad()
def held_out(student: nn.Module, teacher: nn.Module | None, val: TokenWindows, count: int, micro_batch: int
             ) -> dict[str, float]:
    """Mean next-token CE of `student` on the first `count` val windows, and its KL (T = 1) to
    `teacher` when one is given."""
    device = next(student.parameters()).device
    ce = kl = tokens = 0.0
    for start in range(0, count, micro_batch):
        batch = val.take(start, min(micro_batch, count - start))
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        logits = student(ids).float()
        ce += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum"))
        if teacher is not None:
            kl += float(token_kl(teacher(ids), logits, 1.0).sum())
        tokens += labels.numel()
    out = {"val_ce": ce / tokens}
    if teacher is not None:
        out["val_kl"] = kl / tokens
    return out


def _tokenizer_sha(folder: Path) -> str:
    return hashlib.sha256(load_tokenizer(folder).model_bytes).hexdigest()


def _check_pair(ctx: Context, teacher_folder: Path, tokens: TokenSet) -> None:
    """Teacher and student must read and write the same ids: one tokenizer, one vocabulary."""
    teacher_name, student_sha = ctx.recipe.distill.teacher, _tokenizer_sha(ctx.base_folder)
    teacher_sha = _tokenizer_sha(teacher_folder)
    if teacher_sha != student_sha:
        raise QuarkError(f"teacher {teacher_name!r} and student {ctx.base!r} use different tokenizers (sha256 "
                         f"{teacher_sha[:12]} vs {student_sha[:12]}): distillation compares logits id by id, so "
                         "both must share one")
    teacher_vocab = read_config(teacher_folder).vocab_size
    if teacher_vocab != ctx.config.vocab_size:
        raise QuarkError(f"teacher {teacher_name!r} has vocab_size {teacher_vocab}, student {ctx.base!r} "
                         f"{ctx.config.vocab_size}: their logits cannot be compared")
    recorded = tokens.meta.get("tokenizer")
    if isinstance(recorded, dict) and recorded.get("sha256") and recorded["sha256"] != student_sha:
        raise QuarkError(f"token set {tokens.folder.name!r} was encoded with tokenizer {recorded.get('name')!r} "
                         f"(sha256 {recorded['sha256'][:12]}), not the student's ({student_sha[:12]})")
    if tokens.vocab_size > ctx.config.vocab_size:
        raise QuarkError(f"token set {tokens.folder.name!r} has vocab_size {tokens.vocab_size}, more than the "
                         f"student's {ctx.config.vocab_size}")


def build(ctx: Context) -> Job:
    t, d = ctx.recipe.train, ctx.recipe.distill
    teacher_folder = ctx.home.existing(ctx.home.model_dir(d.teacher), "teacher model")
    tokens = TokenSet.open(ctx.data.train)
    _check_pair(ctx, teacher_folder, tokens)
    if t.seq_len > read_config(teacher_folder).max_seq_len:
        raise QuarkError(f"train.seq_len {t.seq_len} exceeds teacher {d.teacher!r}'s context")
    what = f"token set {tokens.folder.name!r}"
    train = TokenWindows(tokens.shards["train"], t.seq_len, seed=t.seed, what=f"{what} (train)")
    teacher = load_model(teacher_folder, device=ctx.env.device).eval().requires_grad_(False)
    model, publish = load_policy(ctx)
    info: dict[str, Any] = {"teacher": d.teacher, "alpha": d.alpha, "temperature": d.temperature, "data_tokens":
                            tokens.num_tokens("train")}
    on_eval = None
    if tokens.num_tokens("val") > t.seq_len:
        val = TokenWindows(tokens.shards["val"], t.seq_len, what=f"{what} (val)")
        count = min(t.eval_windows, val.windows_per_epoch)
        info["teacher_val_ce"] = held_out(teacher, None, val, count, t.micro_batch)["val_ce"]
        start = held_out(model.to(ctx.env.device), teacher, val, count, t.micro_batch)
        info.update(student_start_val_ce=start["val_ce"], student_start_val_kl=start["val_kl"])
        on_eval = lambda student: held_out(student, teacher, val, count, t.micro_batch)  # noqa: E731
    return Job(model, train, distill_loss(teacher, d.alpha, d.temperature), publish, on_eval=on_eval, info=info)


def distill(home: Home, *, name: str, teacher: str | None = None, **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune distill`: the student is the run's base model (`base`); see quark.align.run.run."""
    overrides = [*kwargs.pop("overrides", [])]
    if teacher and kwargs.get("resume"):
        recorded = recorded_value(home, name, "distill", "teacher")
        if recorded and recorded != teacher:
            raise QuarkError(f"run {name!r} distils teacher {recorded!r}, not {teacher!r}")
    elif teacher:
        overrides.append(f"distill.teacher={teacher}")
    return run(home, "distill", build, name=name, overrides=overrides, resolve=resolve_token_set, **kwargs)
