"""The ingest pipeline as datatrove stages.

    prepare     readers -> normalise -> drop empty -> language -> licence policy -> scrub -> annotate
                -> staging/<rank>.parquet                                               (N tasks)
    exact       sha256 index over all staged shards: which positions repeat an earlier text (1 task)
    signatures  staged shard -> drop exact duplicates -> MinHash signatures               (N tasks)
    buckets     MinHash LSH buckets: candidate duplicate pairs                    (one task per band)
    clusters    union the pairs into clusters, one document kept per cluster               (1 task)
    write       staged shard -> drop exact and near duplicates -> data/<name>/train/shard-<rank>.parquet

Every stage is independent of the executor: the same list runs locally, on Ray or on Slurm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupSignature
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter

from quark.data.dedup import MINHASH, ExactDedupFilter, ExactDedupIndex, NearDuplicateFilter, SplitWordTokenizer
from quark.data.readers import PydocTopicsReader, StagedShardReader, StrictJsonlReader, TextFileReader, record_adapter
from quark.data.shards import COMPRESSION, SCHEMA, SPLIT, document_row
from quark.data.sources import Plan
from quark.data.steps import Annotate, DetectLanguage, DropEmpty, LicenseFilter, Normalize, RecordErrors, Scrub

STAGE_NAMES = ("prepare", "exact", "signatures", "buckets", "clusters", "write")


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
        common = dict(data_folder=str(item.root), paths_file=str(paths_file), default_metadata=default_metadata)
        if item.kind == "text":
            readers.append(TextFileReader(**common))
        elif item.kind == "jsonl":
            readers.append(StrictJsonlReader(**common, text_key=text_field, adapter=record_adapter))
        else:
            readers.append(ParquetReader(**common, text_key=text_field, adapter=record_adapter))
    return readers


def topics_reader(limit: int | None, license: str) -> PydocTopicsReader:
    return PydocTopicsReader(limit=limit or -1, default_metadata={"license": license})


def ingest_stages(readers: list[PipelineStep], folder_licenses: dict[str, str], work: Path, output: Path,
                  tasks: int, error_dir: Path, unknown_license: str = "auto") -> list[Stage]:
    staging, exact, signatures, buckets, clusters = (str(work / name) for name in
                                                     ("staging", "exact", "signatures", "buckets", "clusters"))

    def writer(folder: str, filename: str) -> ParquetWriter:
        # max_file_size=-1: exactly one file per rank, named as asked (no 000_ size-rotation prefix)
        return ParquetWriter(folder, output_filename=filename, adapter=document_row, schema=SCHEMA,
                             compression=COMPRESSION, max_file_size=-1)

    return [
        Stage("prepare", [*readers, RecordErrors(str(error_dir)), Normalize(), DropEmpty(),
                          DetectLanguage(), LicenseFilter(folder_licenses, unknown_license), Scrub(), Annotate(),
                          writer(staging, "${rank}.parquet")], tasks),
        Stage("exact", [ExactDedupIndex(staging, exact, tasks)], 1),
        Stage("signatures", [StagedShardReader(staging), ExactDedupFilter(exact),
                             MinhashDedupSignature(signatures, config=MINHASH, language=SplitWordTokenizer())], tasks),
        Stage("buckets", [MinhashDedupBuckets(signatures, buckets, config=MINHASH)], MINHASH.num_buckets),
        Stage("clusters", [MinhashDedupCluster(buckets, clusters, config=MINHASH)], 1),
        Stage("write", [StagedShardReader(staging), ExactDedupFilter(exact), NearDuplicateFilter(clusters),
                        writer(str(output / SPLIT), "shard-${rank}.parquet")], tasks),
    ]
