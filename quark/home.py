"""The home folder: every path Quark reads or writes is derived here.

One place for the layout (datasets/, tokenizers/, tokens/, models/, runs/, quark.db, config.toml)
means no module invents its own paths, and names coming from users are validated once before they
become folder names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from quark.errors import QuarkError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # used with fullmatch: "$" would accept "q\n"


def validate_name(name: str, what: str = "name") -> str:
    """Refuse names that could escape the home (separators, '..', control characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise QuarkError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-' "
            "(no path separators, no '..', at most 128 characters)"
        )
    return name


def default_home() -> Path:
    return Path(os.environ.get("QUARK_HOME") or Path.home() / ".quark").expanduser()


@dataclass(frozen=True)
class Home:
    """Paths under $QUARK_HOME. Creating a Home creates the folder, nothing else."""

    root: Path

    @classmethod
    def open(cls, root: Path | str | None = None) -> Home:
        path = Path(root).expanduser() if root else default_home()
        if path.exists() and not path.is_dir():
            raise QuarkError(f"home {path} exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path.resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "quark.db"

    @property
    def corpus_db_path(self) -> Path:
        return self.root / "corpus.duckdb"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    def _named(self, kind: str, name: str, what: str) -> Path:
        return self.root / kind / validate_name(name, what)

    def dataset_dir(self, name: str) -> Path:
        return self._named("data", name, "dataset name")

    def tokenizer_dir(self, name: str) -> Path:
        return self._named("tokenizers", name, "tokenizer name")

    def tokens_dir(self, name: str) -> Path:
        return self._named("tokens", name, "token set name")

    def model_dir(self, name: str) -> Path:
        return self._named("models", name, "model name")

    def run_dir(self, name: str) -> Path:
        return self._named("runs", name, "run name")

    def index_dir(self, name: str) -> Path:
        """Files a document index keeps beside quark.db (its approximate vector index)."""
        return self._named("indexes", name, "index name")

    @property
    def assets_dir(self) -> Path:
        return self.root / "assets"

    def existing(self, path: Path, what: str) -> Path:
        """Return path if it exists, else a QuarkError naming the missing thing."""
        if not path.exists():
            raise QuarkError(f"unknown {what} {path.name!r} (no {path.relative_to(self.root)} in {self.root})")
        return path
