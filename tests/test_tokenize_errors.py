"""Bad input to `quark tokenize`: one clear line, exit 1, nothing written under tokenizers/ or tokens/."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Quark
from tokenize_helpers import write_dataset

TEXTS = [path.read_text(encoding="utf-8") for path in sorted(Path(json.__file__).parent.glob("*.py"))]


def _fails(quark: Quark, *args: str, says: str, clean: tuple[str, ...] = ("tokenizers", "tokens")) -> str:
    """Run a command that must fail: one line saying `says`, exit 1, nothing under the `clean` folders."""
    result = quark(*args, expect=1)
    line = result.output.strip().splitlines()[-1]  # a progress bar may precede it once work has begun
    assert line.startswith("error: ") and says in line, result.output
    assert "Traceback" not in result.output, result.output
    for kind in clean:
        assert not (quark.home / kind).exists() or not any((quark.home / kind).iterdir()), f"{kind}/ not empty"
    return line


def _train(*extra: str) -> tuple[str, ...]:
    return ("tokenize", "train", "--vocab-size", "400", "--name", "tok", *extra)


@pytest.fixture
def words(quark: Quark) -> Quark:
    write_dataset(quark.home, "words", [TEXTS[:3], TEXTS[3:]])
    return quark


def test_unknown_dataset(quark: Quark) -> None:
    _fails(quark, *_train("--data", "nope"), says="unknown dataset 'nope'")


def test_dataset_without_shards(quark: Quark) -> None:
    (quark.home / "data" / "empty" / "train").mkdir(parents=True)
    _fails(quark, *_train("--data", "empty"), says="dataset 'empty' has no Parquet shards")


def test_shard_without_text_column(quark: Quark) -> None:
    path = quark.home / "data" / "notext" / "train" / "shard-00000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"content": ["hello"]}), path)
    _fails(quark, *_train("--data", "notext"), says="no 'text' column (columns: content)")


def test_text_column_of_the_wrong_type(quark: Quark) -> None:
    path = quark.home / "data" / "ints" / "train" / "shard-00000.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": [1, 2, 3]}), path)
    _fails(quark, *_train("--data", "ints"), says="column 'text' has type int64, expected string")


def test_corrupt_shard(words: Quark) -> None:
    (words.home / "data" / "words" / "train" / "shard-00001.parquet").write_bytes(b"PAR1 not really")
    line = _fails(words, *_train("--data", "words"), says="shard-00001.parquet: not a readable Parquet file")
    assert "shard-00000" not in line


@pytest.mark.parametrize(("vocab", "says"), [("100", "vocab size 100 is too small for this data: it needs at least"),
                                             ("20000",
                                              "vocab size 20000 is too large for this data: it yields at most")])
def test_vocab_size_that_does_not_fit_the_data(words: Quark, vocab: str, says: str) -> None:
    _fails(words, "tokenize", "train", "--data", "words", "--vocab-size", vocab, "--name", "tok", says=says)


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden"])
def test_names_with_path_separators(words: Quark, name: str) -> None:
    _fails(words, "tokenize", "train", "--data", "words", "--vocab-size", "400", "--name", name,
           says="invalid tokenizer name")
    _fails(words, "tokenize", "train", "--data", name, "--vocab-size", "400", "--name", "tok",
           says="invalid dataset name")


def test_encode_bad_input(words: Quark) -> None:
    _fails(words, "tokenize", "encode", "--tokenizer", "nope", "--data", "words", says="unknown tokenizer 'nope'")
    words("tokenize", "train", "--data", "words", "--vocab-size", "400", "--name", "tok")
    for args, says in [
        (["--data", "nope"], "unknown dataset 'nope'"),
        (["--data", "words", "--name", "a/b"], "invalid token set name 'a/b'"),
        (["--data", "words", "--val-fraction", "1.5"], "--val-fraction must be in [0, 1), got 1.5"),
        (["--data", "words", "--executor", "spark"], "unknown executor 'spark' (expected one of local, ray, slurm)"),
        (["--data", "words", "--executor", "slurm"], "executor slurm needs a partition"),
        (["--data", "words", "--data", "words", "--name", "twice"], "dataset listed twice"),
        (["--data", "words", "--data", "other"], "--name is required when encoding more than one dataset"),
    ]:
        _fails(words, "tokenize", "encode", "--tokenizer", "tok", *args, says=says, clean=("tokens",))


def test_inspect_bad_files(words: Quark, tmp_path: Path) -> None:
    _fails(words, "tokenize", "inspect", "--tokenizer", "nope", __file__, says="unknown tokenizer 'nope'")
    words("tokenize", "train", "--data", "words", "--vocab-size", "400", "--name", "tok")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9\n".encode("latin-1"))
    for path, says in [(tmp_path / "missing.txt", "cannot read"), (tmp_path, "cannot read"),
                       (latin1, "latin1.txt: not UTF-8 (byte 0xe9 at offset 3)")]:
        line = _fails(words, "tokenize", "inspect", "--tokenizer", "tok", __file__, path, says=says, clean=())
        assert path.name in line
