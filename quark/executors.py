"""Where datatrove pipelines run: every local core by default, a Ray or Slurm cluster on request.

`run_pipeline` hides the differences a caller should not care about: Ray needs a cluster handle,
Slurm submits and returns (so we wait for the array job), and the Ray executor only *warns* when a
task fails. Every executor marks finished tasks under `logging_dir/completions/`, so the one check
that holds for all three is that every task is marked before the caller goes on to merge outputs.

Slurm reads its partition and time limit from QUARK_SLURM_PARTITION and QUARK_SLURM_TIME (default
24:00:00); the home folder must be on a filesystem the cluster nodes share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import PipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from quark.errors import QuarkError

EXECUTORS = ("local", "ray", "slurm")


class QuietLocalExecutor(LocalPipelineExecutor):
    """The local executor without datatrove's per-task log lines on the terminal: Quark shows its own
    progress bar, and a failing task still raises in the caller."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        logger.disable("datatrove")
        return super()._run_for_rank(rank, local_rank, node_rank)


def run_pipeline(pipeline: Sequence[PipelineStep], *, tasks: int, logging_dir: Path, executor: str = "local",
                 workers: int | None = None, job_name: str = "quark", poll: Callable[[], None] | None = None) -> None:
    """Run `pipeline` as `tasks` datatrove tasks; return once every task has completed.

    `poll` is called about twice a second while the tasks run (to move a progress bar).
    """
    check_executor(executor, workers)
    build = {"local": _local, "ray": _ray, "slurm": _slurm}[executor]
    with _quiet_datatrove():
        runner = build(list(pipeline), tasks, str(logging_dir), workers, job_name)
        with _polling(poll):
            try:
                runner.run()
            except FileNotFoundError as exc:
                if executor == "slurm" and exc.filename == "sbatch":
                    raise QuarkError("executor slurm: `sbatch` is not on PATH (run from a Slurm login node)") from None
                raise
            if executor == "slurm":
                _wait_for_slurm(runner)
    missing = runner.get_incomplete_ranks(skip_completed=True)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise QuarkError(f"executor {executor}: {len(missing)} of {tasks} tasks did not complete (tasks {shown}); "
                         f"see the task logs under {logging_dir}/logs")


def check_executor(executor: str, workers: int | None = None) -> None:
    """Refuse an unknown executor or worker count before any work starts."""
    if executor not in EXECUTORS:
        raise QuarkError(f"unknown executor {executor!r} (expected one of {', '.join(EXECUTORS)})")
    if workers is not None and workers < 1:
        raise QuarkError(f"--workers must be at least 1, got {workers}")


def _local(pipeline: list, tasks: int, logging_dir: str, workers: int | None, job_name: str) -> PipelineExecutor:
    workers = min(workers or os.cpu_count() or 1, tasks)
    return QuietLocalExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir)


def _ray(pipeline: list, tasks: int, logging_dir: str, workers: int | None, job_name: str) -> PipelineExecutor:
    import ray
    from datatrove.executor import RayPipelineExecutor

    if not ray.is_initialized():
        # RAY_ADDRESS (or `ray start` on this machine) joins a cluster; otherwise Ray starts a local one.
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers or -1, logging_dir=logging_dir)


def _slurm(pipeline: list, tasks: int, logging_dir: str, workers: int | None, job_name: str) -> PipelineExecutor:
    from datatrove.executor import SlurmPipelineExecutor

    partition = os.environ.get("QUARK_SLURM_PARTITION")
    if not partition:
        raise QuarkError("executor slurm needs a partition: set QUARK_SLURM_PARTITION (and QUARK_SLURM_TIME, "
                         "default 24:00:00)")
    activate = Path(sys.prefix) / "bin" / "activate"
    return SlurmPipelineExecutor(
        pipeline, tasks=tasks, workers=workers or -1, logging_dir=logging_dir, job_name=job_name,
        partition=partition, time=os.environ.get("QUARK_SLURM_TIME", "24:00:00"),
        venv_path=str(activate) if activate.is_file() else None,
        slurm_logs_folder=str(Path(logging_dir) / "slurm_logs"))


def _wait_for_slurm(runner: PipelineExecutor, interval: float = 10.0) -> None:
    """Block until the submitted array job has left the queue (finished, failed or cancelled)."""
    job_id = str(getattr(runner, "job_id", -1))
    if job_id == "-1" or not shutil.which("squeue"):
        return
    while runner.get_incomplete_ranks(skip_completed=True):
        queued = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip()
        if not queued:
            return
        time.sleep(interval)


@contextlib.contextmanager
def _quiet_datatrove() -> Iterator[None]:
    """Silence datatrove's logging in this process for the duration of a run."""
    logger.disable("datatrove")
    try:
        yield
    finally:
        logger.enable("datatrove")


@contextlib.contextmanager
def _polling(poll: Callable[[], None] | None, interval: float = 0.5) -> Iterator[None]:
    if poll is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            poll()

    thread = threading.Thread(target=loop, name="quark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        poll()
