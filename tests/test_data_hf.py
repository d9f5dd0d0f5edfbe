"""Hugging Face `datasets` folders on disk ingest directly: save_to_disk folders (a DatasetDict of
splits) and the datasets cache, written here with pyarrow in exactly the shapes `datasets` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from data_corpus import rows

TEXTS = [f"Document number {index} talks about {topic} at some length, for the reader tests."
         for index, topic in enumerate(["rivers", "bridges", "owls", "clocks", "ferns", "kites", "lamps"])]


def _write_stream(path: Path, table: pa.Table) -> None:
    """An Arrow IPC stream, as datasets' ArrowWriter writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)


def _info(license: str) -> str:
    return json.dumps({"description": "", "citation": "", "license": license,
                       "features": {"text": {"dtype": "string", "_type": "Value"}}})


def _save_to_disk(root: Path) -> Path:
    """DatasetDict.save_to_disk: dataset_dict.json + one folder per split, shards listed in state.json."""
    folder = root / "saved"
    (folder).mkdir(parents=True)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    splits = {"train": TEXTS[:5], "test": TEXTS[5:]}
    for split, texts in splits.items():
        shards = [texts[: len(texts) // 2 + 1], texts[len(texts) // 2 + 1:]] if split == "train" else [texts]
        names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
        for name, part in zip(names, shards):
            _write_stream(folder / split / name, pa.table({"text": part, "idx": list(range(len(part)))}))
        (folder / split / "dataset_info.json").write_text(_info("apache-2.0"))
        (folder / split / "state.json").write_text(json.dumps({
            "_data_files": [{"filename": name} for name in names], "_fingerprint": "0123abcd",
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
            "_split": split}))
    return folder


def _cache(root: Path) -> Path:
    """~/.cache/huggingface/datasets: <name>/<config>/<version>/<hash>/ with split files, map() caches,
    lock files and the downloads folder beside them."""
    cache = root / "hf-cache"
    leaf = cache / "notes" / "default" / "0.0.0" / "9f8e7d"
    _write_stream(leaf / "notes-train-00000-of-00002.arrow", pa.table({"content": TEXTS[:3]}))
    _write_stream(leaf / "notes-train-00001-of-00002.arrow", pa.table({"content": TEXTS[3:6]}))
    _write_stream(leaf / "cache-5a4b3c2d.arrow", pa.table({"content": ["a map() result, derived: not a document"]}))
    (leaf / "dataset_info.json").write_text(_info("gpl-3.0"))
    (cache / "notes" / "default" / "0.0.0" / "9f8e7d.incomplete_info.lock").write_text("")
    (cache / "downloads").mkdir()
    (cache / "downloads" / "4c1f0e").write_text("raw download: should never be ingested\n")
    return cache


def test_save_to_disk_folder_ingests_every_split_in_order(quark, home: Path, tmp_path: Path) -> None:
    folder = _save_to_disk(tmp_path)
    summary = quark.json("data", "ingest", str(folder), "--name", "saved", "--workers", "1")["datasets"][0]
    table = rows(home, "saved")
    assert sorted(row["text"].strip() for row in table) == sorted(TEXTS)
    assert summary["docs"] == len(TEXTS) and summary["licenses"] == {"apache-2.0": len(TEXTS)}
    assert all(".arrow#" in row["source"] and "/saved/" in row["source"] for row in table)
    from quark.data.hfdisk import plan_folder
    assert plan_folder(folder).files == ["train/data-00000-of-00002.arrow", "train/data-00001-of-00002.arrow",
                                         "test/data-00000-of-00001.arrow"]  # dataset_dict.json's order
    assert not any(row["source"].endswith(".json") for row in table)


def test_datasets_cache_skips_derived_files_and_honours_the_card_licence(quark, home: Path, tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    kept = quark.json("data", "ingest", str(cache), "--name", "cached", "--text-field", "content",
                      "--workers", "1")["datasets"][0]
    # the card says GPL-3.0: every row is dropped as copyleft, nothing from cache-*/downloads/ is read
    assert kept["docs"] == 0 and kept["dropped"] == {"copyleft_license": 6}
    (cache / "notes" / "default" / "0.0.0" / "9f8e7d" / "dataset_info.json").write_text(_info("mit"))
    summary = quark.json("data", "ingest", str(cache), "--name", "cached", "--text-field", "content",
                         "--workers", "1")["datasets"][0]
    assert sorted(row["text"].strip() for row in rows(home, "cached")) == sorted(TEXTS[:6])
    assert summary["licenses"] == {"mit": 6}


def test_bad_arrow_files_fail_with_one_line(quark, tmp_path: Path) -> None:
    folder = _save_to_disk(tmp_path)
    missing = quark("data", "ingest", str(folder), "--text-field", "body", "--name", "x", expect=1)
    assert "no 'body' column" in missing.output and "data-00000-of-00002.arrow" in missing.output
    (folder / "train" / "data-00000-of-00002.arrow").write_bytes(b"not arrow at all")
    broken = quark("data", "ingest", str(folder), "--name", "x", expect=1)
    errors = [line for line in broken.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data-00000-of-00002.arrow: not a readable Arrow file" in errors[0]
    assert "Traceback" not in broken.output
