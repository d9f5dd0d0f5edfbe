"""Rendering results: a rich table of stored scores and a PNG of training curves.

Curves come from `runs/<run>/metrics.jsonl`: one JSON object per line with `step` and any of
`loss`, `val_loss`. A last line without its newline is a write in progress and is skipped.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.table import Table

from quark.atomic import atomic_file
from quark.errors import QuarkError
from quark.evaluation.results import EvalResult

CURVE_KEYS = ("loss", "val_loss")
# The metric each task is summarised by, first in the table.
HEADLINE = {"perplexity": "perplexity", "humaneval": "pass@1", "mbpp": "pass@1", "docqa": "f1", "choice": "acc",
            "redteam": "helpful_harmless", "mesh": "built", "image": "colour"}

Curves = dict[str, list[tuple[int, float]]]


def results_table(results: Sequence[EvalResult]) -> Table:
    table = Table(title="Evaluation results")
    for column in ("model", "run", "task", "score", "details", "when"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for r in results:
        head = HEADLINE.get(r.task)
        details = ", ".join(f"{k} {_fmt(v)}" for k, v in r.metrics.items()
                            if k != head and isinstance(v, (int, float)) and not isinstance(v, bool))
        table.add_row(r.model, r.run or "-", r.task, _fmt(r.metrics.get(head)) if head in r.metrics else "-", details,
                      datetime.datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M"))
    return table


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def read_curves(run_dir: Path) -> Curves:
    """{metric: [(step, value), …]} from a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise QuarkError(f"no training metrics for run {Path(run_dir).name!r} (missing {path})")
    curves: Curves = {key: [] for key in CURVE_KEYS}
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # a line still being written
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError) as exc:
            raise QuarkError(f"{path}:{number}: not a metrics line with a 'step' ({exc})") from None
        for key in CURVE_KEYS:
            if isinstance(row.get(key), (int, float)):
                curves[key].append((step, float(row[key])))
    return {k: v for k, v in curves.items() if v}


def plot_curves(curves_by_run: Mapping[str, Curves], out: Path) -> Path:
    """One PNG: training loss (solid) and validation loss (dashed, dots) against step, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(curves_by_run.values()):
        raise QuarkError("no loss curves to plot")
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for index, (run, curves) in enumerate(sorted(curves_by_run.items())):
        colour = f"C{index % 10}"
        if "loss" in curves:
            axes.plot(*zip(*curves["loss"]), color=colour, label=f"{run} train")
        if "val_loss" in curves:
            axes.plot(*zip(*curves["val_loss"]), color=colour, linestyle="--", marker="o", markersize=3,
                      label=f"{run} val")
    axes.set_title("Training curves")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats/token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_file(Path(out), "wb") as handle:
        figure.savefig(handle, format="png")
    plt.close(figure)
    return Path(out)
