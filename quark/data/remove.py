"""`quark data remove --source PATTERN`: a takedown. Every ingested dataset with a matching document
is rewritten without it, and every blend built from a changed dataset (or from a changed blend) is
rebuilt from its manifest's recipe, all published together: either the source is gone everywhere
or nothing changed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quark.data import catalog
from quark.data.mix import MANIFEST, blend_record, inputs_of, load_manifest, spec_from_manifest
from quark.data.shards import COMPRESSION, SCHEMA, SPLIT, list_shards
from quark.errors import QuarkError
from quark.home import Home


def source_matcher(pattern: str) -> Callable[[str], bool]:
    """A glob (`*/vendor/*`) matches the whole source; a plain path or URL matches itself and
    everything under it (`/src/lib` matches `/src/lib/a.py`, a JSONL file its `file:line` records)."""
    if not pattern.strip():
        raise QuarkError("--source needs a pattern, like '*/secrets/*' or /path/to/file.py")
    if any(char in pattern for char in "*?["):
        return lambda source: fnmatchcase(source, pattern)
    stem = pattern.rstrip("/")
    return lambda source: source == pattern or source.startswith((stem + "/", stem + ":", stem + "#"))


def _count_matches(folder: Path, matches: Callable[[str], bool]) -> int:
    return sum(1 for path in list_shards(folder)
               for source in pq.read_table(path, columns=["source"]).column("source").to_pylist() if matches(source))


def _filter_shards(source_folder: Path, target_folder: Path, matches: Callable[[str], bool]) -> None:
    """Copy a dataset's shards, dropping matching rows; untouched shards keep their bytes (and hashes)."""
    for path in list_shards(source_folder):
        target = target_folder / SPLIT / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        table = pq.read_table(path)
        hit = pa.array([matches(source) for source in table.column("source").to_pylist()], type=pa.bool_())
        if not pc.any(hit).as_py():
            shutil.copy2(path, target)
        elif (kept := table.filter(pc.invert(hit))).num_rows:
            pq.write_table(kept.cast(SCHEMA), target, compression=COMPRESSION)


def remove_source(home: Home, pattern: str) -> dict[str, Any]:
    matches = source_matcher(pattern)
    entries = catalog.datasets(home)
    found = {entry["name"]: _count_matches(home.dataset_dir(entry["name"]), matches) for entry in entries}
    if not any(found.values()):
        raise QuarkError(f"no document's source matches {pattern!r} (see sources with quark data export)")
    # every dataset of documents loses them (ingested, deduplicated, filtered); blends are rebuilt
    removed = {entry["name"]: found[entry["name"]] for entry in entries
               if entry["kind"] != "blend" and found[entry["name"]]}
    changed = set(removed)
    blends = []
    for entry in entries:  # creation order: a blend's inputs were made before it
        if entry["kind"] == "blend":
            manifest = load_manifest(home.dataset_dir(entry["name"]) / MANIFEST)
            # rebuilt when an input changed, or when it still holds the source (built before a re-ingest)
            if changed.intersection(inputs_of(manifest)) or found[entry["name"]]:
                blends.append((entry["name"], manifest))
                changed.add(entry["name"])
    drops = {name: catalog.drops(home, name) for name in removed}

    def build(folders: dict[str, Path]) -> list[catalog.DatasetRecord]:
        records = []
        for name, count in removed.items():
            _filter_shards(home.dataset_dir(name), folders[name], matches)
            entry = next(e for e in entries if e["name"] == name)
            records.append(catalog.DatasetRecord(
                name, entry["kind"], entry["sources"],
                drops={**drops[name], "removed": drops[name].get("removed", 0) + count},
                removal=(pattern, count), rebuilt=True))
        resolve = lambda dataset: folders.get(dataset, home.dataset_dir(dataset))  # noqa: E731
        for name, manifest in blends:
            records.append(blend_record(home, spec_from_manifest(manifest), folders[name], resolve, rebuilt=True))
        return records

    catalog.publish(home, [*removed, *(name for name, _ in blends)], build)
    return {"pattern": pattern, "removed": removed, "rebuilt_blends": [name for name, _ in blends]}
