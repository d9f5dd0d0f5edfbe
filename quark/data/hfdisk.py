"""Hugging Face `datasets` folders a user already has on disk, read with pyarrow alone.

Two shapes, both recognised by their metadata files:
- `save_to_disk` / `load_from_disk` folders: `state.json` + `dataset_info.json` beside
  `data-XXXXX-of-NNNNN.arrow` (the order is state.json's `_data_files`); a DatasetDict is a
  `dataset_dict.json` listing split folders of that shape.
- the `datasets` cache (`~/.cache/huggingface/datasets/<name>/<config>/<version>/<hash>/`):
  `dataset_info.json` beside `<name>-<split>[-XXXXX-of-NNNNN].arrow`; `cache-*.arrow` files there are
  the results of `.map()`/`.filter()` calls, derived data, and are left out, as are `downloads/`.
Parquet files in such folders (and in the hub cache) are read as Parquet. The Arrow files are Arrow
IPC streams (what `datasets` writes) or IPC files; both are read. The `datasets` package is not needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from quark.errors import QuarkError

MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
SKIP_DIRS = frozenset({"downloads", ".git", "__pycache__"})


@dataclass
class HfFolder:
    root: Path
    files: list[str] = field(default_factory=list)   # .arrow and .parquet files, relative to root, in order
    license: str | None = None                       # dataset_info.json's `license`, when it names one


def is_hf_dataset_folder(folder: Path) -> bool:
    """A folder that has (at its top, or in a split/cache folder under it) `datasets` metadata."""
    if any((folder / marker).is_file() for marker in MARKERS):
        return True
    for _, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        if any(marker in names for marker in MARKERS) and any(name.endswith(".arrow") for name in names):
            return True
    return False


def plan_folder(root: Path) -> HfFolder:
    """The data files of an HF dataset folder, in the order `datasets` would read them."""
    found = HfFolder(root)
    licenses = set()
    splits = _dict_splits(root / "dataset_dict.json")
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted((d for d in dirs if d not in SKIP_DIRS),
                         key=lambda d: (splits.index(d) if current == str(root) and d in splits else len(splits), d))
        folder = Path(current)
        if "dataset_info.json" in names and (license := _info_license(folder / "dataset_info.json")):
            licenses.add(license)
        ordered = _state_order(folder / "state.json") if "state.json" in names else None
        data = [name for name in sorted(names) if name.endswith((".arrow", ".parquet")) and not name.startswith(
            ("cache-", "tmp"))]
        if ordered is not None:
            data = [name for name in ordered if name in data] + [name for name in data if name not in ordered]
        found.files += [str((folder / name).relative_to(root)) for name in data]
    if not found.files:
        raise QuarkError(f"{root}: a Hugging Face dataset folder with no .arrow or .parquet data files")
    # one licence for every split applies to all; differing ones leave each file's licence unknown
    found.license = next(iter(licenses)) if len(licenses) == 1 else None
    return found


def _dict_splits(path: Path) -> list[str]:
    """A DatasetDict's split names in its own order (train before test), or [] when not one."""
    if not path.is_file():
        return []
    try:
        splits = json.loads(path.read_text(encoding="utf-8")).get("splits")
    except (OSError, ValueError, AttributeError) as error:
        raise QuarkError(f"{path}: not a readable dataset_dict.json ({error})") from error
    return [split for split in splits if isinstance(split, str)] if isinstance(splits, list) else []


def _info_license(path: Path) -> str | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise QuarkError(f"{path}: not a readable dataset_info.json ({error})") from error
    license = info.get("license") if isinstance(info, dict) else None
    return license.strip() if isinstance(license, str) and license.strip() and license.strip() != "other" else None


def _state_order(path: Path) -> list[str] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise QuarkError(f"{path}: not a readable state.json ({error})") from error
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list):
        return None
    return [entry["filename"] for entry in files if isinstance(entry, dict) and isinstance(entry.get("filename"), str)]


def _open(path: Path) -> pa.RecordBatchReader | pa.ipc.RecordBatchFileReader:
    source = pa.memory_map(str(path), "r")
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source)


def arrow_schema(path: Path) -> pa.Schema:
    try:
        return _open(path).schema
    except (OSError, pa.ArrowException) as error:
        raise QuarkError(f"{path}: not a readable Arrow file ({error})") from error


def arrow_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC stream or file."""
    try:
        reader = _open(path)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)
        else:
            yield from reader
    except (OSError, pa.ArrowException) as error:
        raise QuarkError(f"{path}: not a readable Arrow file ({error})") from error
