"""The ingest pipeline as datatrove stages.

    prepare     readers -> normalise -> drop empty -> language -> licence policy -> scrub -> annotate
                -> staging/<rank>.parquet                                               (N tasks)
    exact       sha256 index over all staged shards: which positions repeat an earlier text (1 task)
    signatures  staged shard -> drop exact duplicates -> MinHash signatures               (N tasks)
    buckets     MinHash LSH buckets: candidate duplicate pairs                    (one task per band)
    clusters    union the pairs into clusters, one document kept per cluster               (1 task)
    write       staged shard -> drop exact and near duplicates -> data/<name>/train/shard-<rank>.parquet

With SimHash instead of MinHash, `signatures` writes 64-bit fingerprints and one `clusters` task
does the banded lookup (quark.data.simhash). `quark data dedup` runs the same stages on an existing
dataset (its `prepare` only re-stages the rows by rank); `quark data filter` is one stage of
filters between a reader of the dataset and the writer.

Every stage is independent of the executor: the same list runs locally, on Ray or on Slurm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupSignature
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter

from quark.data.dedup import (
    ExactDedupFilter,
    ExactDedupIndex,
    NearDuplicateFilter,
    PositionFilter,
    SplitWordTokenizer,
    minhash_config,
)
from quark.data.readers import (
    ArrowReader,
    PydocTopicsReader,
    StagedShardReader,
    StrictJsonlReader,
    TextFileReader,
    record_adapter,
)
from quark.data.shards import COMPRESSION, SCHEMA, SPLIT, document_row
from quark.data.simhash import SimhashCluster, SimhashConfig, SimhashSignature
from quark.data.sources import Plan
from quark.data.steps import Annotate, DetectLanguage, DropEmpty, LicenseFilter, Normalize, RecordErrors, Scrub
from quark.errors import QuarkError

DEDUP_METHODS = ("minhash", "simhash", "exact", "none")


@dataclass
class Stage:
    name: str
    pipeline: list[PipelineStep]
    tasks: int


def plan_readers(plan: Plan, work: Path, text_field: str, default_metadata: dict | None = None) -> list[PipelineStep]:
    """One datatrove reader per (kind, root) of the plan, each reading a paths file in `work`."""
    readers: list[PipelineStep] = []
    (work / "paths").mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(plan.inputs):
        paths_file = work / "paths" / f"{index:03d}-{item.kind}.txt"
        paths_file.write_text("".join(f"{name}\n" for name in item.files), encoding="utf-8")
        metadata = {**(default_metadata or {}), **({"license": item.license} if item.license else {})}
        common = dict(data_folder=str(item.root), paths_file=str(paths_file), default_metadata=metadata or None)
        if item.kind == "text":
            readers.append(TextFileReader(**common))
        elif item.kind == "jsonl":
            readers.append(StrictJsonlReader(**common, text_key=text_field, adapter=record_adapter))
        elif item.kind == "arrow":
            readers.append(ArrowReader(**common, text_key=text_field, adapter=record_adapter))
        else:
            readers.append(ParquetReader(**common, text_key=text_field, adapter=record_adapter))
    return readers


def topics_reader(limit: int | None, license: str) -> PydocTopicsReader:
    return PydocTopicsReader(limit=limit or -1, default_metadata={"license": license})


def _writer(folder: str, filename: str) -> ParquetWriter:
    # max_file_size=-1: exactly one file per rank, named as asked (no 000_ size-rotation prefix)
    return ParquetWriter(folder, output_filename=filename, adapter=document_row, schema=SCHEMA,
                         compression=COMPRESSION, max_file_size=-1)


def dataset_reader(dataset_folder: Path) -> ParquetReader:
    """The shards of an existing dataset as Documents (the other columns become metadata)."""
    return ParquetReader(str(dataset_folder / SPLIT), glob_pattern="shard-*.parquet", text_key="text", id_key="id")


def ingest_stages(readers: list[PipelineStep], folder_licenses: dict[str, str], work: Path, output: Path,
                  tasks: int, error_dir: Path, unknown_license: str = "auto", method: str = "minhash",
                  threshold: float | None = None) -> list[Stage]:
    prepare = [*readers, RecordErrors(str(error_dir)), Normalize(), DropEmpty(), DetectLanguage(),
               LicenseFilter(folder_licenses, unknown_license), Scrub(), Annotate()]
    return [Stage("prepare", [*prepare, _writer(str(work / "staging"), "${rank}.parquet")], tasks),
            *dedup_stages(work, output, tasks, method, threshold)]


def reread_stage(dataset_folder: Path, work: Path, tasks: int) -> Stage:
    """Stage an existing dataset's rows by rank, for the dedup stages that index by position."""
    return Stage("prepare", [dataset_reader(dataset_folder), _writer(str(work / "staging"), "${rank}.parquet")], tasks)


def filter_stage(dataset_folder: Path, filters: list[PipelineStep], output: Path, tasks: int) -> Stage:
    return Stage("filter", [dataset_reader(dataset_folder), *filters,
                            _writer(str(output / SPLIT), "shard-${rank}.parquet")], tasks)


def dedup_stages(work: Path, output: Path, tasks: int, method: str = "minhash",
                 threshold: float | None = None) -> list[Stage]:
    """The stages after `staging/<rank>.parquet` exists: exact, then near duplicates by `method`."""
    if method not in DEDUP_METHODS:
        raise QuarkError(f"unknown dedup method {method!r} (expected one of {', '.join(DEDUP_METHODS)})")
    if threshold is not None and not 0.5 < threshold <= 1.0:
        raise QuarkError(f"--threshold must be a similarity in (0.5, 1], got {threshold}")
    staging, exact, signatures, buckets, clusters = (str(work / name) for name in
                                                     ("staging", "exact", "signatures", "buckets", "clusters"))
    write = [StagedShardReader(staging)]
    stages = []
    if method != "none":
        stages.append(Stage("exact", [ExactDedupIndex(staging, exact, tasks)], 1))
        write.append(ExactDedupFilter(exact))
    if method == "minhash":
        config = minhash_config(threshold)
        stages += [Stage("signatures", [StagedShardReader(staging), ExactDedupFilter(exact),
                                        MinhashDedupSignature(signatures, config=config,
                                                              language=SplitWordTokenizer())], tasks),
                   Stage("buckets", [MinhashDedupBuckets(signatures, buckets, config=config)], config.num_buckets),
                   Stage("clusters", [MinhashDedupCluster(buckets, clusters, config=config)], 1)]
        write.append(NearDuplicateFilter(clusters))
    elif method == "simhash":
        stages += [Stage("signatures", [StagedShardReader(staging), ExactDedupFilter(exact),
                                        SimhashSignature(signatures)], tasks),
                   Stage("clusters", [SimhashCluster(signatures, clusters, tasks,
                                                     SimhashConfig.for_threshold(threshold))], 1)]
        write.append(PositionFilter(clusters, "near_duplicate"))
    return [*stages, Stage("write", [*write, _writer(str(output / SPLIT), "shard-${rank}.parquet")], tasks)]


def stage_count(method: str) -> int:
    """How many stages an ingest with this dedup method runs (for progress bars)."""
    return 1 + {"none": 1, "exact": 2, "simhash": 4, "minhash": 5}[method]
