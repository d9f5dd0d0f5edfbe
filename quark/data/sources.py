"""Turn the paths a user gives `quark data ingest` into the files each reader will read.

Runs in the calling process before any worker starts, so a missing or unreadable path, or a Parquet
file without the text column, fails at once with one clear line. Walking a folder skips version
control, caches and virtual environments silently (they are not documents), and skips and counts
vendored code, generated files, binaries and oversized files. A git checkout contributes its
tracked files (`git ls-files`), so build output and ignored files stay out. A Hugging Face
`datasets` folder (save_to_disk, or the datasets cache) contributes its Arrow/Parquet data files
only (quark.data.hfdisk).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quark.data import hfdisk
from quark.data.licenses import LICENSE_FILE, license_file_id
from quark.errors import QuarkError
from quark.inputs import regular_file

MAX_FILE_BYTES = 1_000_000  # larger "source" files are data dumps or generated
IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
                          ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".idea", ".vscode", ".DS_Store"})
VENDORED_DIRS = frozenset({"vendor", "vendored", "_vendor", "node_modules", "third_party", "third-party",
                           "thirdparty", "bower_components", "site-packages", "dist-packages"})
GENERATED_NAMES = ("*.min.js", "*.min.css", "*.map", "*_pb2.py", "*_pb2_grpc.py", "*.pb.go", "*.pb.cc", "*.pb.h",
                   "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Pipfile.lock", "Cargo.lock",
                   "composer.lock", "go.sum", "uv.lock")
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .tif .tiff .webp .svg .psd .pdf .zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar "
    ".war .whl .egg .so .dylib .dll .exe .o .a .lib .obj .class .pyc .pyo .pyd .bin .dat .db .sqlite .sqlite3 .pkl "
    ".pickle .npy .npz .pt .pth .ckpt .safetensors .onnx .h5 .mp3 .mp4 .wav .flac .ogg .avi .mov .mkv .ttf .otf "
    ".woff .woff2 .eot .crc .duckdb".split())
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".jsonl.zst", ".ndjson.gz")
STDLIB_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "ensurepip",
                              "turtledemo", "__pycache__", "pydoc_data"})
BUILTIN_LICENSE = "PSF-2.0"


@dataclass
class ReaderInput:
    """The files one reader reads: `kind` is text, jsonl, parquet or arrow; `files` are relative to
    `root`; `license` is what the input declares for all of them (a Hugging Face dataset's card)."""

    kind: str
    root: Path
    files: list[str] = field(default_factory=list)
    license: str | None = None


@dataclass
class Plan:
    inputs: list[ReaderInput] = field(default_factory=list)
    folder_licenses: dict[str, str] = field(default_factory=dict)  # absolute folder -> SPDX id
    skipped: Counter[str] = field(default_factory=Counter)          # reason -> files not read
    sources: list[str] = field(default_factory=list)                # what the user asked for

    @property
    def files(self) -> int:
        return sum(len(item.files) for item in self.inputs)


def kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".arrow"):
        return "arrow"
    return "parquet" if name.endswith(".parquet") else "text"


def plan_paths(paths: list[Path], text_field: str, limit: int | None = None) -> Plan:
    """Validate every path and list what each reader will read."""
    if not paths:
        raise QuarkError("nothing to ingest: give one or more files or folders, or --builtin stdlib")
    plan = Plan()
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise QuarkError(f"no such file or folder: {given}")
        path = path.resolve()
        plan.sources.append(str(path))
        if path.is_dir() and hfdisk.is_hf_dataset_folder(path):
            _plan_hf_folder(plan, path)
        elif path.is_dir():
            if not (path / ".git").exists():  # a folder inside a repository is under the repository's licence
                plan.folder_licenses.update(_enclosing_license(path.parent))
            _plan_folder(plan, path, limit)
        else:
            _check_readable(path)
            plan.folder_licenses.update(_enclosing_license(path.parent))
            _add(plan, path.parent, path.name)
    for item in plan.inputs:
        if item.kind in ("parquet", "arrow"):
            for name in item.files:
                _check_columns(item.root / name, text_field)
    return plan


def _plan_hf_folder(plan: Plan, root: Path) -> None:
    """A `datasets` folder: only its data files, in its own order, under the licence its card names."""
    found = hfdisk.plan_folder(root)
    for kind in ("arrow", "parquet"):
        files = [name for name in found.files if kind_of(Path(name)) == kind]
        if files:
            plan.inputs.append(ReaderInput(kind, root, files, license=found.license))


def plan_stdlib(limit: int | None = None) -> Plan:
    """The running Python's standard library modules (tests, bundled wheels and generated topic
    data left out): about 600 files, 11 MB on CPython 3.11."""
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in STDLIB_SKIP_DIRS and not d.startswith(("config-", "lib-")))
        files += [str((Path(folder) / name).relative_to(root)) for name in sorted(names) if name.endswith(".py")]
    files.sort()
    plan = Plan(inputs=[ReaderInput("text", root, _spread(files, limit))], sources=[f"stdlib:{root}"])
    plan.folder_licenses[str(root)] = BUILTIN_LICENSE
    return plan


def _spread(files: list[str], limit: int | None) -> list[str]:
    """At most `limit` files, taken evenly across the sorted list so every package is represented."""
    if limit is None or len(files) <= limit:
        return files
    step = len(files) / limit
    return [files[int(i * step)] for i in range(limit)]


def _plan_folder(plan: Plan, root: Path, limit: int | None) -> None:
    listed = _git_files(root)
    names = listed if listed is not None else _walk(plan, root)
    by_folder: dict[Path, list[str]] = {}
    for name in names:
        by_folder.setdefault((root / name).parent, []).append(Path(name).name)
    for folder, entries in by_folder.items():
        plan.folder_licenses.update(_folder_licenses(folder, entries))
    kept = []
    for name in names:
        relative = Path(name)
        if listed is not None and IGNORED_DIRS.intersection(relative.parts[:-1]):
            continue  # tracked editor or cache folders: not documents
        if listed is not None and VENDORED_DIRS.intersection(relative.parts[:-1]):
            plan.skipped["vendored"] += 1
        elif reason := _skip_reason(root / relative):
            if reason != "license_file":
                plan.skipped[reason] += 1
        else:
            kept.append(name)
    for name in _spread(sorted(kept), limit):
        _check_readable(root / name)
        _add(plan, root, name)


def _git_files(root: Path) -> list[str] | None:
    """Tracked files of a git checkout, or None when `root` is not one (or git is missing)."""
    if not (root / ".git").exists():
        return None
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached"], capture_output=True,
                                check=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(name for name in listed.stdout.decode("utf-8", "surrogateescape").split("\0")
                  if name and (root / name).is_file())


def _walk(plan: Plan, root: Path) -> list[str]:
    names = []
    for folder, dirs, files in os.walk(root):
        keep = []
        for directory in sorted(dirs):
            if directory in IGNORED_DIRS:
                continue
            if directory in VENDORED_DIRS:
                plan.skipped["vendored"] += sum(len(f) for _, _, f in os.walk(Path(folder) / directory))
                continue
            keep.append(directory)
        dirs[:] = keep
        names += [str((Path(folder) / name).relative_to(root)) for name in files if name not in IGNORED_DIRS]
    return sorted(names)


def _skip_reason(path: Path) -> str | None:
    name = path.name
    if LICENSE_FILE.match(name):
        return "license_file"  # read as the folder's licence, not ingested as a document
    if any(fnmatch(name, pattern) for pattern in GENERATED_NAMES):
        return "generated"
    if path.suffix.lower() in BINARY_SUFFIXES:
        return "binary"
    try:
        info = path.stat()
    except OSError as error:
        raise QuarkError(f"cannot read {path}: {error.strerror or error}") from error
    if not stat.S_ISREG(info.st_mode):
        return "not_a_file"  # a FIFO or device inside a folder would block or never end
    size = info.st_size
    if kind_of(path) == "text" and size > MAX_FILE_BYTES:
        return "too_large"
    return None


def _enclosing_license(folder: Path) -> dict[str, str]:
    """The licences of the folders at or above `folder` that have a licence file, looking no higher
    than the root of the git repository it is in (or the nearest one, outside any repository).
    All of them, not only the nearest: the unknown-licence policy asks whether any is copyleft."""
    found: dict[str, str] = {}
    for candidate in (folder, *folder.parents):
        try:
            entries = [entry.name for entry in candidate.iterdir()]
        except OSError:
            break
        found.update(_folder_licenses(candidate, entries))
        if ".git" in entries or (found and not _inside_git(candidate)):
            break
    return found


def _inside_git(folder: Path) -> bool:
    return any((parent / ".git").exists() for parent in folder.parents)


def _folder_licenses(folder: Path, entries: list[str]) -> dict[str, str]:
    found = sorted(name for name in entries if LICENSE_FILE.match(name) and (folder / name).is_file())
    if not found:
        return {}
    ids = [license_file_id(folder / name) for name in found]
    known = [spdx for spdx in ids if spdx != "unknown"]
    # Several licence files (LICENSE-MIT + LICENSE-APACHE) mean a choice between them.
    return {str(folder): " OR ".join(dict.fromkeys(known)) if known else "unknown"}


def _check_readable(path: Path) -> None:
    regular_file(path, "input")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        raise QuarkError(f"cannot read {path}: {error.strerror or error}") from error


def _check_columns(path: Path, text_field: str) -> None:
    if kind_of(path) == "arrow":
        schema = hfdisk.arrow_schema(path)
    else:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as error:
            raise QuarkError(f"{path}: not a readable Parquet file ({error})") from error
    if text_field not in schema.names:
        raise QuarkError(f"{path}: no {text_field!r} column (columns: {', '.join(schema.names)}; "
                         "choose one with --text-field)")
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise QuarkError(f"{path}: column {text_field!r} is {schema.field(text_field).type}, expected strings")


def _add(plan: Plan, root: Path, name: str) -> None:
    kind = kind_of(root / name)
    for item in plan.inputs:
        if item.kind == kind and item.root == root:
            item.files.append(name)
            return
    plan.inputs.append(ReaderInput(kind, root, [name]))
