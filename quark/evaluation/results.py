"""Evaluation results in quark.db (`eval_results`): one row per (model, run, task) measurement."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from quark import db
from quark.atomic import write_text
from quark.errors import QuarkError


@dataclass(frozen=True)
class EvalResult:
    id: int
    model: str
    run: str | None
    task: str
    metrics: dict
    created_at: float


def save_result(conn, model: str, run: str | None, task: str, metrics: dict) -> int:
    """Store one result (in a transaction) and return its id."""
    with db.transaction(conn):
        cursor = conn.execute("INSERT INTO eval_results(model, run, task, metrics, created_at) VALUES (?,?,?,?,?)",
                              (model, run, task, json.dumps(metrics, sort_keys=True), time.time()))
    return int(cursor.lastrowid)


def query_results(conn, *, model: str | None = None, task: str | None = None, latest: bool = False) -> list[EvalResult]:
    """Results, oldest first; with `latest`, only the newest per (model, task)."""
    sql = "SELECT id, model, run, task, metrics, created_at FROM eval_results WHERE 1=1"
    params: list = []
    if model:
        sql, params = sql + " AND model = ?", params + [model]
    if task:
        sql, params = sql + " AND task = ?", params + [task]
    if latest:
        sql += " AND id IN (SELECT max(id) FROM eval_results GROUP BY model, task)"
    rows = conn.execute(sql + " ORDER BY created_at, id", params).fetchall()
    return [EvalResult(r["id"], r["model"], r["run"], r["task"], json.loads(r["metrics"]),
                       r["created_at"]) for r in rows]


def model_run(model_folder: Path) -> str | None:
    """The training run a model folder came from: `source_run` in its config.json, if a trainer wrote one."""
    path = Path(model_folder) / "config.json"
    try:
        run = json.loads(path.read_text()).get("source_run")
    except FileNotFoundError:
        raise QuarkError(f"no model at {model_folder} (missing config.json)") from None
    except ValueError as exc:
        raise QuarkError(f"{path}: not valid JSON ({exc})") from None
    return str(run) if run else None


HEADLINE = {"perplexity": ("perplexity",), "humaneval": ("pass@1",), "mbpp": ("pass@1",),
            "docqa": ("exact_match", "f1", "citation_coverage"), "choice": ("acc", "acc_norm"),
            "redteam": ("helpful_harmless", "unsupported_rate"), "mesh": ("built", "chamfer_p2s", "chamfer_p2p"),
            "image": ("colour", "position", "shape", "size")}
_SCORES = "## Evaluation"


def update_card(model_folder: Path, conn) -> None:
    """Rewrite the model card's evaluation section with the newest result of each task.

    The card is the model's one-page summary (data, recipe, scores); its evaluation section is
    regenerated from quark.db each time, so it never disagrees with the stored results.
    """
    card = Path(model_folder) / "card.md"
    text = card.read_text(encoding="utf-8") if card.exists() else f"# {Path(model_folder).name}\n"
    text = text.split(f"\n{_SCORES}\n")[0].rstrip() + "\n"
    rows = query_results(conn, model=Path(model_folder).name, latest=True)
    if rows:
        lines = ["", _SCORES, "", "| task | metric | value | run | date |", "|---|---|---|---|---|"]
        for result in rows:
            for metric in HEADLINE.get(result.task, tuple(sorted(result.metrics))[:3]):
                if metric in result.metrics:
                    value = result.metrics[metric]
                    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                    lines.append(f"| {result.task} | {metric} | {shown} | {result.run or '-'} | "
                                 f"{time.strftime('%Y-%m-%d', time.localtime(result.created_at))} |")
        text += "\n".join(lines) + "\n"
    write_text(card, text)
