"""`quark data ingest`: plan the inputs, run the pipeline stages, publish the datasets.

The stages work in a hidden scratch folder inside the home (shared with cluster nodes when the home
is on a shared filesystem) that is removed afterwards, whatever happens; datasets appear through
catalog.publish, so a failed or interrupted ingest leaves data/ and corpus.duckdb as they were.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep

from quark.data import catalog
from quark.data.executors import ExecutorOptions, StageRunner
from quark.data.licenses import UNKNOWN_POLICIES
from quark.data.pipeline import DEDUP_METHODS, ingest_stages, plan_readers, topics_reader
from quark.data.sources import BUILTIN_LICENSE, Plan, plan_paths, plan_stdlib
from quark.errors import QuarkError
from quark.home import Home, validate_name

BUILTINS = ("stdlib",)
# Called after each stage with (dataset, stage name); the CLI advances its progress bar.
StageCallback = Callable[[str, str], None]


@dataclass
class Job:
    """One dataset to build: its name, what it reads, and where its files' licences come from."""

    name: str
    plan: Plan
    readers: Callable[[Path], list[PipelineStep]]
    units: int  # files (or topics): datatrove splits work by file, so more tasks than this would idle


def ingest(home: Home, paths: list[Path], *, name: str | None = None, builtin: str | None = None,
           text_field: str = "text", limit: int | None = None, options: ExecutorOptions | None = None,
           unknown_license: str = "auto", dedup: str = "minhash",
           on_stage: StageCallback | None = None) -> dict[str, Any]:
    """Ingest `paths` as dataset `name` (or the built-in corpus as stdlib-code + stdlib-text).

    `unknown_license` is the policy for documents whose licence stays unknown (keep, drop, or auto:
    drop inside a copyleft folder or repository, keep elsewhere; see quark.data.licenses). `dedup`
    is minhash, simhash, exact or none (then `quark data dedup` can run it later as a stage of its own).
    """
    options = options or ExecutorOptions()
    if limit is not None and limit < 1:
        raise QuarkError(f"--limit must be at least 1, got {limit}")
    if unknown_license not in UNKNOWN_POLICIES:
        raise QuarkError(f"--unknown-licence must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown_license!r}")
    if dedup not in DEDUP_METHODS:
        raise QuarkError(f"--dedup must be one of {', '.join(DEDUP_METHODS)}, got {dedup!r}")
    jobs = _jobs(paths, name, builtin, text_field, limit)
    for job in jobs:
        home.dataset_dir(job.name)  # validate every name before any work
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-ingest-", dir=home.root))
    try:
        with StageRunner(options, scratch) as runner:
            records = catalog.publish(home, [job.name for job in jobs],
                                      lambda folders: [_run_job(runner, job, folders[job.name], unknown_license, dedup,
                                                                on_stage)
                                                       for job in jobs])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "datasets": [catalog.summary(home, record) for record in records],
        "unknown_license": unknown_license,
        "dedup": dedup,
        "executor": options.kind,
        "workers": options.workers,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _jobs(paths: list[Path], name: str | None, builtin: str | None, text_field: str, limit: int | None) -> list[Job]:
    if builtin is not None:
        if builtin not in BUILTINS:
            raise QuarkError(f"unknown built-in corpus {builtin!r}: choose one of {', '.join(BUILTINS)}")
        if paths or name:
            raise QuarkError("--builtin stdlib names its own datasets (stdlib-code, stdlib-text): drop the "
                             "paths/--name")
        license = {"license": BUILTIN_LICENSE}
        code = plan_stdlib(limit)
        topics = topics_reader(limit, BUILTIN_LICENSE)
        return [Job("stdlib-code", code, lambda work: plan_readers(code, work, "text", license), code.files),
                Job("stdlib-text", Plan(sources=["pydoc_data.topics"]), lambda work: [topics], topics.count())]
    if not paths:
        raise QuarkError("nothing to ingest: give one or more files or folders, or --builtin stdlib")
    if name is None:
        derived = Path(paths[0]).expanduser().resolve().stem
        try:
            name = validate_name(derived, "dataset name")
        except QuarkError:
            raise QuarkError(f"cannot name a dataset after {derived!r}: give --name") from None
    validate_name(name, "dataset name")
    plan = plan_paths(paths, text_field, limit)
    return [Job(name, plan, lambda work: plan_readers(plan, work, text_field), plan.files)]


def _run_job(runner: StageRunner, job: Job, output: Path, unknown_license: str, dedup: str,
             on_stage: StageCallback | None) -> catalog.DatasetRecord:
    work = runner.scratch / job.name
    tasks = max(1, min(runner.options.workers, job.units))
    stages = ingest_stages(job.readers(work), job.plan.folder_licenses, work, output, tasks, runner.error_dir,
                           unknown_license, dedup)
    for stage in stages:
        runner.run(f"{job.name}/{stage.name}", stage.pipeline, stage.tasks)
        if on_stage:
            on_stage(job.name, stage.name)
    totals = runner.counters(f"{job.name}/prepare", f"{job.name}/write")
    dropped = Counter({key.removeprefix("dropped_"): n for key, n in totals.items() if key.startswith("dropped_")})
    dropped.update(job.plan.skipped)
    scrubbed = {key.removeprefix("scrubbed_"): n for key, n in sorted(totals.items()) if key.startswith("scrubbed_")}
    return catalog.DatasetRecord(job.name, "ingest", job.plan.sources, drops=dict(dropped),
                                 extra={"scrubbed": scrubbed})
