"""Generate bad-input cases for every `quark` command from typer's own command registry.

The tree is walked through `typer.main.get_command(app)`, so a command group that lands tomorrow
is fuzzed the day it lands with no list to update. Each case takes one command, fills its
required parameters with plain values, and replaces exactly one parameter with a bad value chosen
by the parameter's kind:

- a path to read: missing, empty, a folder, a FIFO, /dev/zero, random bytes, non-UTF-8 text,
  truncated / wrongly typed JSON, truncated safetensors and Parquet, `../` traversal, unicode;
- a folder to read: the same files where a folder is expected, an empty folder, a folder whose
  config.json holds wrong types or negative sizes;
- a path to write: an existing folder, a path under a regular file;
- a name: empty, `../x`, `a/b`, a trailing newline, 200 characters, unicode, an unknown name;
- a number: 0 and -1 (unless the option declares them allowed with `min=`), 2**63, nan/inf,
  a word;
- a choice: a value that is not one of them;
- stdin (`-`): non-UTF-8 bytes, /dev/zero, nothing.

Every one of those must fail cleanly. Bool flags are never set, so a mode switch such as
`chat --web` is never turned on, and commands that serve (`serve`, `chat`) are given a model that
does not exist so they fail before they could start listening.
"""

from __future__ import annotations

import json
import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin

import typer

SHARED = {"home", "json_out", "debug"}
# Commands that would start a long-running server or UI on a happy path: always poisoned with a
# model that does not exist, and their --model is never the mutated parameter.
SERVERS = {("serve",), ("chat",)}
POISON = ["--model", "zz-no-such-model"]
NAME_PARAMS = {"name", "model", "tokenizer", "data", "dataset", "run", "checkpoint", "adapter", "base", "a", "b",
               "val", "out", "tool", "recipe", "preset", "source", "index", "conversation_name"}
OUTPUT_NAMES = {"name", "out", "run"}  # a new name to create: an unknown name is a valid one
FILTER_NAMES = {"tool"}  # filters: an unknown value matches nothing, which is not an error
DIR_PARAMS = {"folder", "workspace", "dir", "directory", "images"}
# Inputs where any readable text is valid (ingest sources, files to inspect): only the files that
# are not text at all, or not there, are bad.
SOURCE_PARAMS = {"paths", "files", "sources"}
SOURCE_BAD = {"missing", "fifo", "devzero", "nonutf8", "traversal", "unicode"}
# Options that only filter a listing (an unknown value lists nothing, which is not an error) or
# only matter together with another option: (command, parameter).
IGNORED = {(("tools", "log"), "tool"), (("tools", "log"), "workspace")}
OUTPUT_PATHS = {"output", "out", "o"}
EXISTING = {"model": "tiny", "base": "tiny", "tokenizer": "tiny-tok"}
MODEL_ARG_GROUPS = {"models"}  # `quark models X NAME`: NAME is a model


@dataclass(frozen=True)
class Case:
    command: tuple[str, ...]
    param: str
    label: str
    argv: tuple[str, ...]
    stdin: Optional[str] = None  # None, "nonutf8", "zero" or "empty"

    @property
    def id(self) -> str:
        return f"{' '.join(self.command)}:{self.param}={self.label}"


def walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, click command) for every runnable command, groups with a callback included."""
    found = []
    subs = getattr(cmd, "commands", None)
    if subs is None:
        return [(path, cmd)]
    if path and getattr(cmd, "invoke_without_command", False):
        found.append((path, cmd))
    for name, sub in sorted(subs.items()):
        found += walk(sub, (*path, name))
    return found


def commands() -> list[tuple[tuple[str, ...], Any]]:
    from quark.commands import app

    return walk(typer.main.get_command(app))


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is_list) with Optional and list unwrapped."""
    is_list = False
    while True:
        origin = get_origin(annotation)
        if origin is Union:
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        elif origin in (list, tuple):
            is_list = True
            annotation = get_args(annotation)[0]
        else:
            return annotation, is_list


def kind(param: Any) -> str:
    annotation, _ = _base_type(param.type_descriptor.annotation)
    name = param.name
    if getattr(param, "is_flag", False) or annotation is bool:
        return "flag"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        if name in OUTPUT_PATHS or "-o" in param.opts:
            return "output"
        return "dir" if name in DIR_PARAMS else "source" if name in SOURCE_PARAMS else "file"
    if isinstance(annotation, type) and issubclass(annotation, __import__("enum").Enum):
        return "choice"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str:
        if "stdin" in (param.help or "").lower() and "'-'" in (param.help or ""):
            return "stdin"
        if name in NAME_PARAMS:
            return "name"
    return "text"  # free text: not fuzzed (any string is a valid prompt)


def _flag(param: Any) -> Optional[str]:
    return param.opts[0] if param.param_type_name == "option" else None


def _base_value(path: tuple[str, ...], param: Any, files: Path) -> str:
    k = kind(param)
    if k in ("file", "dir", "source"):
        return str(files / "missing.json")
    if k == "output":
        return str(files / "outputs" / f"{param.name}.out")
    if k == "int":
        return str(max(1, param.min or 1))
    if k == "float":
        return "0.5"
    if k == "choice":
        return next(iter(_base_type(param.type_descriptor.annotation)[0])).value
    if param.name in EXISTING or (path[0] in MODEL_ARG_GROUPS and param.param_type_name == "argument"):
        return EXISTING.get(param.name, "tiny")
    return "fz"


def bad_values(param: Any, files: Path) -> list[tuple[str, str, Optional[str]]]:
    """(label, value, stdin) for one parameter."""
    k = kind(param)
    f = files
    read_files = [("missing", f / "missing.json"), ("empty", f / "empty.json"), ("folder", f / "folder"),
                  ("fifo", f / "fifo"), ("devzero", Path("/dev/zero")), ("random", f / "random.bin"),
                  ("nonutf8", f / "latin1.jsonl"), ("truncjson", f / "trunc.json"), ("wrongjson", f / "wrong.json"),
                  ("wrongjsonl", f / "wrong.jsonl"), ("truncsafetensors", f / "trunc.safetensors"),
                  ("truncparquet", f / "trunc.parquet"), ("traversal", Path("../zz-missing/x.json")),
                  ("unicode", f / "ünï-missing.json")]
    if k == "file":
        return [(label, str(p), None) for label, p in read_files]
    if k == "source":
        return [(label, str(p), None) for label, p in read_files if label in SOURCE_BAD]
    if k == "dir":
        return [(label, str(p), None) for label, p in read_files if label != "folder"] + [
            ("emptyfolder", str(f / "folder"), None), ("badconfig", str(f / "badconfig"), None),
            ("negconfig", str(f / "negconfig"), None)]
    if k == "output":
        return [("folder", str(f / "badconfig"), None), ("underfile", str(f / "random.bin" / "x.out"), None)]
    if k == "name":
        values = [("empty", ""), ("traversal", "../x"), ("slash", "a/b"), ("newline", "q\n"), ("long", "x" * 200),
                  ("unicode", "ünï")]
        if param.name not in OUTPUT_NAMES | FILTER_NAMES:
            values.append(("unknown", "zz-missing"))
        return [(label, v, None) for label, v in values]
    if k in ("int", "float"):
        low = param.min
        values = []
        if k == "int" and (low is None or low > 0):
            values.append(("zero", "0"))
        if low is None or low > -1:
            values.append(("negative", "-1"))
        if k == "int":
            values += [("huge", str(2 ** 63)), ("word", "many")]
        else:
            values += [("nan", "nan"), ("inf", "inf"), ("word", "many")]
        return [(label, v, None) for label, v in values]
    if k == "choice":
        return [("bogus", "zz-bogus", None)]
    if k == "stdin":
        return [("stdin-nonutf8", "-", "nonutf8"), ("stdin-zero", "-", "zero")]
    return []


def build_cases(files: Path) -> list[Case]:
    cases = []
    for path, cmd in commands():
        params = [p for p in cmd.params if p.name not in SHARED]
        server = path in SERVERS
        for target in params:
            if (server and target.name == "model") or (path, target.name) in IGNORED:
                continue
            for label, value, stdin in bad_values(target, files):
                argv: list[str] = list(path)
                if server:
                    argv += POISON
                for p in params:
                    if server and p.name == "model":
                        continue
                    if p is target:
                        v = value
                    elif p.required:
                        v = _base_value(path, p, files)
                    else:
                        continue
                    flag = _flag(p)
                    argv += [flag, v] if flag else [v]
                cases.append(Case(path, target.name, label, tuple(argv), stdin))
    return cases


def sample(cases: list[Case], n: int, seed: int) -> list[Case]:
    """n cases: one per command first (so every command is covered), then random ones."""
    rng = random.Random(seed)
    shuffled = cases[:]
    rng.shuffle(shuffled)
    chosen, seen = [], set()
    for case in shuffled:
        if case.command not in seen:
            seen.add(case.command)
            chosen.append(case)
    picked = set(chosen)
    rest = [c for c in shuffled if c not in picked]
    return chosen + rest[: max(0, n - len(chosen))]


def make_files(root: Path) -> Path:
    """The zoo of bad files the cases point at."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "outputs").mkdir()
    (root / "empty.json").write_bytes(b"")
    (root / "folder").mkdir()
    os.mkfifo(root / "fifo")
    (root / "random.bin").write_bytes(random.Random(0).randbytes(4096))
    (root / "latin1.jsonl").write_bytes('{"text": "caf\xe9", "messages": []}\n'.encode("latin-1"))
    (root / "trunc.json").write_text('{"vocab_size": 1000, "n_layer": [2,')
    (root / "wrong.json").write_text(json.dumps({"vocab_size": "big", "n_layer": -2, "messages": 5, "datasets": 7}))
    (root / "wrong.jsonl").write_text('{"messages": "hi"}\n[1, 2]\n"text"\n')
    header = json.dumps({"w": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, 16384]}}).encode()
    (root / "trunc.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)
    (root / "trunc.parquet").write_bytes(b"PAR1" + b"\x15\x04" * 50)
    for name, config in (("badconfig", {"vocab_size": "1000", "n_layer": "two", "n_embd": 64}),
                         ("negconfig", {"vocab_size": -5, "n_layer": 2, "n_head": 0, "n_embd": -64})):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(config))
        (root / name / "generation_config.json").write_text(json.dumps({"max_new_tokens": "lots", "temperature": -1}))
        (root / name / "model.safetensors").write_bytes((root / "trunc.safetensors").read_bytes())
    return root
