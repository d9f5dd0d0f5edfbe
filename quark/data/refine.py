"""`quark data dedup` and `quark data filter`: stages of their own on a dataset that already exists.

They run the same datatrove blocks as ingest (quark.data.pipeline) under the same executors, and
publish a new dataset through the catalog like every other command. Its `manifest.json` is the
provenance, as a blend's is: the input dataset and the sha256 of each of its shards, the method or
filters and their parameters, what was dropped and why, and the output shards' hashes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from quark.data import catalog
from quark.data.executors import ExecutorOptions, StageRunner
from quark.data.filters import FilterSpec
from quark.data.pipeline import DEDUP_METHODS, Stage, dedup_stages, filter_stage, reread_stage
from quark.data.shards import describe_shard, list_shards
from quark.errors import QuarkError
from quark.home import Home

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
StageCallback = Callable[[str], None]  # called with each finished stage's name


def dedup(home: Home, dataset: str, *, method: str = "minhash", threshold: float | None = None,
          name: str | None = None, options: ExecutorOptions | None = None,
          on_stage: StageCallback | None = None) -> dict[str, Any]:
    """Remove exact and near duplicates (by `method`) from `dataset` into a new dataset."""
    if method not in DEDUP_METHODS or method == "none":
        raise QuarkError(f"unknown dedup method {method!r} (expected minhash, simhash or exact)")
    params = {"method": method, "threshold": threshold}
    return _refine(home, dataset, name or f"{dataset}-dedup", "dedup", params, options, on_stage,
                   lambda folder, work, output, tasks: [reread_stage(folder, work, tasks),
                                                        *dedup_stages(work, output, tasks, method, threshold)])


def filter_dataset(home: Home, dataset: str, spec: FilterSpec, *, name: str | None = None,
                   options: ExecutorOptions | None = None, on_stage: StageCallback | None = None) -> dict[str, Any]:
    """Keep the documents of `dataset` that pass every filter of `spec`, as a new dataset."""
    return _refine(home, dataset, name or f"{dataset}-filtered", "filter", spec.describe(), options, on_stage,
                   lambda folder, work, output, tasks: [filter_stage(folder, spec.blocks(), output, tasks)])


def _refine(home: Home, dataset: str, name: str, kind: str, params: dict[str, Any], options: ExecutorOptions | None,
            on_stage: StageCallback | None, stages: Callable[[Path, Path, Path, int], list[Stage]]) -> dict[str, Any]:
    options = options or ExecutorOptions()
    entry = catalog.require(home, dataset)
    home.dataset_dir(name)  # validates the name
    if name == dataset:
        raise QuarkError(f"--name {name!r} is the input dataset: give the result a new name")
    source = home.dataset_dir(dataset)
    inputs = [describe_shard(path) for path in list_shards(source)]
    if not inputs:
        raise QuarkError(f"dataset {dataset!r} has no shards to {kind}")
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{kind}-", dir=home.root))

    def build(folders: dict[str, Path]) -> list[catalog.DatasetRecord]:
        tasks = max(1, min(options.workers, len(inputs)))
        planned = stages(source, scratch / "work", folders[name], tasks)
        for stage in planned:
            runner.run(stage.name, stage.pipeline, stage.tasks)
            if on_stage:
                on_stage(stage.name)
        # the first and last stages see every document once (the middle ones re-apply earlier filters)
        totals = runner.counters(*dict.fromkeys((planned[0].name, planned[-1].name)), prefixes=("dropped_",))
        dropped = dict(Counter({key.removeprefix("dropped_"): n for key, n in totals.items()}).most_common())
        manifest = _manifest(kind, name, dataset, entry, inputs, params, dropped, folders[name])
        (folders[name] / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return [catalog.DatasetRecord(name, kind, [dataset], drops=dropped, extra={"manifest": manifest})]

    try:
        with StageRunner(options, scratch) as runner:
            record, = catalog.publish(home, [name], build)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**catalog.summary(home, record), "input": dataset, "input_docs": entry["docs"], kind: params,
            "manifest": str(home.dataset_dir(name) / MANIFEST), "executor": options.kind, "workers": options.workers,
            "seconds": round(time.perf_counter() - started, 2)}


def _manifest(kind: str, name: str, dataset: str, entry: dict[str, Any], inputs: list[dict[str, Any]],
              params: dict[str, Any], dropped: dict[str, int], folder: Path) -> dict[str, Any]:
    shards = list_shards(folder)
    described = [describe_shard(path) for path in shards]
    chars = sum(sum(pq.read_table(path, columns=["chars"]).column("chars").to_pylist()) for path in shards)
    return {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "name": name,
        "input": {"dataset": dataset, "kind": entry["kind"], "sources": entry["sources"], "docs": entry["docs"],
                  "chars": entry["chars"], "shards": inputs},
        kind: params,
        "dropped": dropped,
        "output": {"docs": sum(shard["rows"] for shard in described),
                   "chars": chars, "shards": described},
    }
