"""`quark data mix`: a blend of datasets by share of characters, with a manifest that rebuilds it.

Ratios are shares of characters (a proxy for tokens). Each input is read in a seeded random order
and documents are taken until its share of the budget is met; an input smaller than its share is
repeated (a new seeded order per pass, recorded as `epochs`). Without `--chars` the budget is the
largest blend that repeats nothing.

`--language-weight LANG=W` reweights languages inside every input: a language's share of an
input's characters becomes proportional to its characters times W (languages not named keep
weight 1; W=0 leaves a language out). So `--language-weight en=2` doubles English's share against
the other languages of each input, repeating English documents if it must. The blend is then
shuffled with the same seed and written as
shards of the common schema. manifest.json records the sha256 of every input shard and output
shard, so `--from-manifest` can check the inputs are unchanged and rebuild the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quark.data import catalog
from quark.data.shards import describe_shard, list_shards, read_dataset, write_shards
from quark.errors import QuarkError
from quark.home import Home, validate_name
from quark.inputs import pydantic_problem, read_json_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
ROWS_PER_SHARD = 50_000


@dataclass(frozen=True)
class BlendSpec:
    name: str
    ratios: dict[str, float]          # dataset -> share of characters (normalised to sum to 1)
    seed: int = 0
    chars: int | None = None          # character budget; None: the largest blend without repeats
    rows_per_shard: int = ROWS_PER_SHARD
    language_weights: dict[str, float] = field(default_factory=dict)  # language -> weight (default 1)


def parse_ratios(pairs: list[str]) -> dict[str, float]:
    """`name=0.7` pairs to {name: share}, shares normalised to sum to 1."""
    if not pairs:
        raise QuarkError("give at least one --ratio DATASET=SHARE (for example --ratio stdlib-code=0.7)")
    ratios: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not sep or not name or not share > 0 or share == float("inf"):
            raise QuarkError(f"bad --ratio {pair!r}: expected DATASET=SHARE with a positive number, like "
                             "stdlib-code=0.7")
        if validate_name(name.strip(), "dataset name") in ratios:
            raise QuarkError(f"dataset {name!r} given twice in --ratio")
        ratios[name.strip()] = share
    total = sum(ratios.values())
    return {name: share / total for name, share in ratios.items()}


def parse_language_weights(pairs: list[str]) -> dict[str, float]:
    """`en=0.8` pairs to {language: weight}; a weight may be 0 (leave the language out)."""
    weights: dict[str, float] = {}
    for pair in pairs:
        language, sep, value = pair.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        language = language.strip().lower()
        if not sep or not language or not 0 <= weight < float("inf"):
            raise QuarkError(f"bad --language-weight {pair!r}: expected LANGUAGE=WEIGHT with a number >= 0, like en=0.8")
        if language in weights:
            raise QuarkError(f"language {language!r} given twice in --language-weight")
        weights[language] = weight
    return weights


def build_blend(home: Home, spec: BlendSpec, folder: Path, resolve: Callable[[str], Path] | None = None
                ) -> dict[str, Any]:
    """Write the blend's shards and manifest into `folder`; return the manifest.

    `resolve` maps an input dataset to its folder (a takedown rebuild reads inputs it has just
    rewritten in temporary folders); by default the dataset's folder under the home.
    """
    resolve = resolve or home.dataset_dir
    if spec.name in spec.ratios:
        raise QuarkError(f"blend {spec.name!r} cannot be one of its own inputs")
    if spec.chars is not None and spec.chars < 1:
        raise QuarkError(f"--chars must be positive, got {spec.chars}")
    inputs = {name: _Input.load(home, name, resolve(name)) for name in sorted(spec.ratios)}
    budget = spec.chars if spec.chars is not None else min(
        entry.chars / spec.ratios[name] for name, entry in inputs.items())
    parts, described = [], []
    for name, entry in inputs.items():
        picks, epochs = entry.pick(round(spec.ratios[name] * budget), spec.seed, spec.language_weights)
        part = entry.table.take(pa.array(picks, type=pa.int64()))
        parts.append(part)
        by_language = part.group_by("language").aggregate([("chars", "sum")]).to_pylist() if part.num_rows else []
        described.append({**entry.describe(), "docs_taken": part.num_rows,
                          "chars_taken": int(np.sum(part.column("chars").to_numpy())) if part.num_rows else 0,
                          "chars_by_language": {row["language"]: row["chars_sum"]
                                                for row in sorted(by_language, key=lambda row: row["language"])},
                          "epochs": epochs})
    blend = pa.concat_tables(parts)
    order = _rng(spec.seed, "blend order", 0).permutation(blend.num_rows)
    shards = write_shards(blend.take(pa.array(order, type=pa.int64())), folder, spec.rows_per_shard)
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": spec.name,
        "seed": spec.seed,
        "ratios": spec.ratios,
        "language_weights": spec.language_weights,
        "chars": spec.chars,
        "budget_chars": int(round(budget)),
        "rows_per_shard": spec.rows_per_shard,
        "inputs": described,
        "output": {"docs": blend.num_rows, "chars": sum(item["chars_taken"] for item in described),
                   "shards": [describe_shard(path) for path in shards]},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def mix(home: Home, spec: BlendSpec) -> dict[str, Any]:
    """Build blend `spec.name` and catalog it; returns its manifest."""
    home.dataset_dir(spec.name)
    for name in spec.ratios:
        catalog.require(home, name)
    record, = catalog.publish(home, [spec.name], lambda folders: [blend_record(home, spec, folders[spec.name])])
    return record.extra["manifest"]


def rebuild(home: Home, manifest_path: Path, name: str | None = None) -> dict[str, Any]:
    """Rebuild a blend from its manifest after checking its inputs are byte for byte the same."""
    recorded = load_manifest(manifest_path)
    check_inputs_unchanged(home, recorded, manifest_path)
    manifest = mix(home, spec_from_manifest(recorded, name))
    manifest["identical"] = manifest["output"]["shards"] == recorded.get("output", {}).get("shards")
    return manifest


def blend_record(home: Home, spec: BlendSpec, folder: Path, resolve: Callable[[str], Path] | None = None,
                 rebuilt: bool = False) -> catalog.DatasetRecord:
    manifest = build_blend(home, spec, folder, resolve)
    return catalog.DatasetRecord(spec.name, "blend", sorted(spec.ratios), rebuilt=rebuilt,
                                 extra={"manifest": manifest})


def spec_from_manifest(manifest: dict[str, Any], name: str | None = None) -> BlendSpec:
    return BlendSpec(name=name or manifest["name"], ratios=manifest["ratios"], seed=manifest["seed"],
                     chars=manifest["chars"], rows_per_shard=manifest["rows_per_shard"],
                     language_weights=manifest.get("language_weights", {}))


class _ManifestInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    dataset: str
    shards: list[dict[str, Any]]


class _Manifest(BaseModel):
    """The fields of manifest.json a rebuild reads, checked before any of them is used."""

    model_config = ConfigDict(extra="allow", strict=True)
    format: int
    name: str
    seed: Annotated[int, Field(ge=0)]
    ratios: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]]
    chars: Annotated[int, Field(ge=1)] | None
    rows_per_shard: Annotated[int, Field(ge=1)]
    inputs: list[_ManifestInput]


def load_manifest(path: Path) -> dict[str, Any]:
    manifest = read_json_file(path, "manifest")
    missing = [key for key in ("format", "name", "seed", "ratios", "chars", "rows_per_shard", "inputs")
               if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise QuarkError(f"{path}: not a quark blend manifest (missing {', '.join(missing)})")
    try:
        _Manifest.model_validate(manifest)
    except ValidationError as exc:
        raise QuarkError(f"{path}: {pydantic_problem(exc)}") from None
    if manifest["format"] != MANIFEST_FORMAT:
        raise QuarkError(f"{path}: manifest format {manifest['format']} is not supported (expected {MANIFEST_FORMAT})")
    return manifest


def check_inputs_unchanged(home: Home, manifest: dict[str, Any], path: Path) -> None:
    """Refuse to rebuild from inputs that differ from the ones the manifest recorded."""
    for entry in manifest["inputs"]:
        name = entry["dataset"]
        catalog.require(home, name)
        current = [describe_shard(shard) for shard in list_shards(home.dataset_dir(name))]
        if current != entry["shards"]:
            changed = next((f"{old['file']} (sha256 {old['sha256'][:12]}…)" for old, new in
                            zip(entry["shards"], current) if old != new), "its list of shards")
            raise QuarkError(f"dataset {name!r} changed since {path} was written: {changed} differs; "
                             "the blend can no longer be rebuilt identically")


def inputs_of(manifest: dict[str, Any]) -> list[str]:
    return [entry["dataset"] for entry in manifest["inputs"]]


class _Input:
    """One input dataset, read whole (blends are built from datasets that fit in memory)."""

    def __init__(self, name: str, folder: Path, table: pa.Table, sources: list[str]):
        self.name, self.folder, self.table, self.sources = name, folder, table, sources
        self.doc_chars = table.column("chars").to_numpy() if table.num_rows else np.zeros(0, dtype=np.int64)
        self.chars = int(self.doc_chars.sum())

    @classmethod
    def load(cls, home: Home, name: str, folder: Path) -> _Input:
        entry = catalog.require(home, name)
        table = read_dataset(folder)
        if table.num_rows == 0 or not table.column("chars").to_numpy().sum():
            raise QuarkError(f"dataset {name!r} is empty: it cannot contribute to a blend")
        return cls(name, folder, table, entry["sources"])

    def pick(self, budget: int, seed: int, language_weights: dict[str, float] | None = None) -> tuple[list[int], int]:
        """Row indices in seeded order until `budget` characters are taken; and how many passes.

        With language weights, the budget is first split over the input's languages (see the
        module docstring) and each language is picked on its own.
        """
        if not language_weights:
            return self._pick(np.arange(self.table.num_rows), budget, seed, self.name)
        languages = np.array(self.table.column("language").to_pylist(), dtype=object)
        shares = {language: float(self.doc_chars[languages == language].sum()) * language_weights.get(language, 1.0)
                  for language in sorted(set(languages.tolist()))}
        total = sum(shares.values())
        if not total:
            raise QuarkError(f"--language-weight leaves nothing of dataset {self.name!r} "
                             f"(its languages: {', '.join(shares)})")
        picks, epochs = [], 0
        for language, share in shares.items():
            if share:
                rows = np.flatnonzero(languages == language)
                taken, passes = self._pick(rows, round(budget * share / total), seed, f"{self.name}:{language}")
                picks += taken
                epochs = max(epochs, passes)
        return picks, epochs

    def _pick(self, rows: np.ndarray, budget: int, seed: int, key: str) -> tuple[list[int], int]:
        picks: list[int] = []
        taken, epoch = 0, 0
        while taken < budget:
            order = rows[_rng(seed, key, epoch).permutation(len(rows))]
            cumulative = taken + np.cumsum(self.doc_chars[order])
            stop = int(np.searchsorted(cumulative, budget, side="left")) + 1  # the row that reaches the budget
            picks.extend(order[:stop].tolist())
            taken = int(cumulative[min(stop, len(order)) - 1])
            epoch += 1
        return picks, epoch

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.name, "sources": self.sources, "docs": self.table.num_rows, "chars": self.chars,
                "shards": [describe_shard(path) for path in list_shards(self.folder)]}


def _rng(seed: int, name: str, epoch: int) -> np.random.Generator:
    """A generator that depends only on (seed, name, epoch): stable across runs and Python versions."""
    key = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, key, epoch])
