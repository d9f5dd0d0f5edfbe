"""Run datatrove pipeline stages on this machine, a Ray cluster or Slurm, one stage after another.

Used by `quark data ingest` and `quark tokenize encode`. A stage is a list of blocks run as N
tasks; later stages read what earlier ones wrote in the scratch folder, so each stage must finish
everywhere before the next starts. Local and Ray executors block until a stage is done; Slurm
returns once jobs are queued, so we poll datatrove's completion markers (the home must be on a
filesystem the nodes share). Whatever the executor, a failed task is turned into one clear error:
the QuarkError a reader recorded (see data.steps.RecordErrors), or the end of the failing task's log.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quark.errors import QuarkError

EXECUTORS = ("local", "ray", "slurm")
SLURM_POLL_S = 10.0
POLL_S = 0.5  # how often `run(..., poll=)` calls back while tasks run


@dataclass(frozen=True)
class ExecutorOptions:
    """Where and how wide stages run: `workers` tasks at once (ingest also splits a corpus into
    that many tasks). Checked on construction, so a bad option fails before any work starts."""

    kind: str = "local"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    slurm_partition: str | None = None
    slurm_time: str = "04:00:00"
    verbose: bool = False  # let datatrove's own logs through to stderr

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise QuarkError(f"unknown executor {self.kind!r} (expected one of {', '.join(EXECUTORS)})")
        if self.workers < 1:
            raise QuarkError(f"--workers must be at least 1, got {self.workers}")
        if self.kind == "slurm" and not self.slurm_partition:
            raise QuarkError("executor slurm needs a partition: give --slurm-partition or set QUARK_SLURM_PARTITION "
                             "(and keep the home on a filesystem the nodes share)")


def ray_worker_setup() -> None:
    """Runs in every Ray worker: datatrove's Ray job forks a process pool from inside the
    multithreaded worker, and a fork taken while another thread holds a lock can deadlock the
    child (seen once in five runs). Spawned pool processes start clean."""
    import multiprocess

    multiprocess.set_start_method("spawn", force=True)


# Pass to ray.init (ours below, or yours when you start Ray yourself) so every worker runs the setup.
RAY_RUNTIME_ENV = {"worker_process_setup_hook": "quark.data.executors.ray_worker_setup"}


def _start_method() -> str:
    """fork where it is safe: workers start in milliseconds and inherit our redirected stderr (quiet
    logs). Not once Ray runs in this process: forking its threads can deadlock the children."""
    ray = sys.modules.get("ray")
    if sys.platform != "linux" or (ray is not None and ray.is_initialized()):
        return "spawn"
    return "fork"


class StageRunner:
    """Runs stages in `scratch` under one executor; a context manager so a Ray instance we started
    is shut down again (one the caller started is left alone)."""

    def __init__(self, options: ExecutorOptions, scratch: Path):
        self.options, self.scratch = options, scratch
        self.error_dir = scratch / "errors"
        self._started_ray = False

    def __enter__(self) -> StageRunner:
        if self.options.kind == "ray":
            import ray

            if not ray.is_initialized():  # RAY_ADDRESS in the environment points at an existing cluster
                ray.init(include_dashboard=False, log_to_driver=self.options.verbose, configure_logging=False,
                         runtime_env=RAY_RUNTIME_ENV)
                self._started_ray = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()

    def logging_dir(self, stage: str) -> Path:
        return self.scratch / "logs" / stage

    def run(self, stage: str, pipeline: list, tasks: int, *, poll: Callable[[], None] | None = None) -> None:
        """Run `pipeline` as `tasks` tasks and return once every one has completed.

        `poll` is called before the tasks start, about twice a second while they run, and once at
        the end (to move a progress bar).
        """
        with _polling(poll), self._quiet(stage):
            executor = self._executor(stage, pipeline, tasks)
            try:
                executor.run()
                if self.options.kind == "slurm":
                    self._wait_for_slurm(stage, executor)
            except QuarkError:
                raise
            except Exception as error:
                self._raise_recorded_error(error)
                if isinstance(error, FileNotFoundError) and error.filename in ("sbatch", "squeue"):
                    raise QuarkError(f"executor slurm: `{error.filename}` is not on PATH "
                                     "(run from a Slurm login node)") from None
                raise
        self._raise_recorded_error(None)
        if missing := executor.get_incomplete_ranks(skip_completed=True):
            shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
            raise QuarkError(f"stage {stage}: {len(missing)} of {tasks} tasks did not finish (tasks {shown}); "
                             f"task {missing[0]}: {self._log_tail(stage, missing[0])}")

    def counters(self, *stages: str, prefixes: tuple[str, ...] = ("dropped_", "scrubbed_")) -> Counter[str]:
        """Sum the datatrove stats whose names start with `prefixes` over all tasks of `stages`."""
        totals: Counter[str] = Counter()
        for stage in stages:
            for path in sorted((self.logging_dir(stage) / "stats").glob("*.json")):
                for block in json.loads(path.read_text()):
                    for key, value in block["stats"].items():
                        if key.startswith(prefixes):
                            totals[key] += int(value["total"] if isinstance(value, dict) else value)
        return totals

    def _executor(self, stage: str, pipeline: list, tasks: int):
        workers = min(self.options.workers, tasks)
        logging_dir = str(self.logging_dir(stage))
        if self.options.kind == "local":
            from datatrove.executor import LocalPipelineExecutor

            return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir,
                                         skip_completed=False, start_method=_start_method())
        if self.options.kind == "ray":
            from datatrove.executor.ray import RayPipelineExecutor

            # group ranks so a stage is at most `workers` Ray jobs: each job start costs a placement group
            return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir,
                                       skip_completed=False, cpus_per_task=1, mem_per_cpu_gb=1,
                                       tasks_per_job=math.ceil(tasks / workers))
        from datatrove.executor.slurm import SlurmPipelineExecutor

        activate = Path(sys.prefix) / "bin" / "activate"  # venv or conda: the nodes run the same Python
        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir,
                                     skip_completed=False, time=self.options.slurm_time,
                                     partition=self.options.slurm_partition, qos=None,
                                     job_name="quark-" + stage.replace("/", "-"),
                                     venv_path=str(activate) if activate.is_file() else None)

    def _wait_for_slurm(self, stage: str, executor: Any) -> None:
        while missing := executor.get_incomplete_ranks(skip_completed=True):
            self._raise_recorded_error(None)
            queued = subprocess.run(["squeue", "-h", "-j", str(executor.job_id)], capture_output=True, text=True)
            if queued.returncode == 0 and not queued.stdout.strip():
                raise QuarkError(f"slurm job {executor.job_id} ({stage}) ended with tasks {missing} unfinished: "
                                 f"{self._log_tail(stage, missing[0])}")
            time.sleep(SLURM_POLL_S)

    def _raise_recorded_error(self, cause: BaseException | None) -> None:
        recorded = sorted(self.error_dir.glob("*.txt")) if self.error_dir.exists() else []
        if recorded:
            raise QuarkError(recorded[0].read_text(encoding="utf-8")) from cause

    def _log_tail(self, stage: str, rank: int, lines: int = 3) -> str:
        log = self.logging_dir(stage) / "logs" / f"task_{rank:05d}.log"
        if not log.exists():
            return f"no log at {log}"
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]
        return " | ".join(tail)

    @contextlib.contextmanager
    def _quiet(self, stage: str) -> Iterator[None]:
        """datatrove logs every task to stderr through loguru; send that to the stage's log folder."""
        if self.options.verbose:
            yield
            return
        from loguru import logger

        log_path = self.logging_dir(stage) / "driver.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as handle:
            logger.remove()
            logger.add(handle, level="INFO")
            try:
                with contextlib.redirect_stderr(handle):
                    yield
            finally:
                logger.remove()
                # resolve sys.stderr at each message: the stream we return to may be replaced later
                logger.add(lambda message: sys.stderr.write(message), level="WARNING")


@contextlib.contextmanager
def _polling(poll: Callable[[], None] | None) -> Iterator[None]:
    """Call `poll` now, every POLL_S seconds from a thread while the body runs, then once more.

    The first call is made here, outside StageRunner._quiet: a rich progress bar it starts wraps the
    real stderr, not the stage log that _quiet swaps in (and closes) while tasks run.
    """
    if poll is None:
        yield
        return
    poll()
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(POLL_S):
            poll()

    thread = threading.Thread(target=loop, name="quark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        poll()
