"""`quark pretrain` on one process: it learns, it resumes exactly after SIGKILL, it refuses bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_data import TINY, corpus_home, metrics, one_thread, token_home, unigram_entropy  # noqa: F401
from quark import db
from quark.errors import QuarkError
from quark.train.data import TokenWindows
from quark.train.recipe import OptimConfig, load_recipe


@pytest.mark.slow
def test_tiny_model_learns_well_below_unigram_entropy(token_home: Path, quark) -> None:
    entropy = unigram_entropy(token_home / "tokens" / "code")
    out = quark.json("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "tiny", *TINY,
                     "--set", "train.micro_batch=8", "--max-steps", "300", "--eval-every", "150", "--save-every", "150")
    steps = metrics(token_home, "tiny")
    assert [e["step"] for e in steps] == list(range(1, 301))
    assert all({"loss", "lr", "tokens_per_s", "mfu", "grad_norm"} <= set(e) for e in steps)
    final = sum(e["loss"] for e in steps[-10:]) / 10
    # A context-free model cannot beat the unigram entropy; a transformer that uses context must.
    assert final < entropy - 1.0, (final, entropy)
    assert steps[0]["loss"] > entropy  # it started from chance (ln 512 = 6.24), so it learned
    val = metrics(token_home, "tiny", "val")
    assert [e["step"] for e in val] == [150, 300] and val[1]["val_loss"] < val[0]["val_loss"]
    assert val[1]["val_loss"] < entropy - 0.4  # on held-out modules too
    assert val[-1]["sample"].startswith('"""Text') and len(val[-1]["sample"]) > len('"""Text')
    assert out["tokens"] == 300 * 8 * 64 and out["val_loss"] == pytest.approx(val[-1]["val_loss"])

    # The published model, its card, the runs row and `models list` all tell the same story.
    model_dir = token_home / "models" / "tiny"
    card = (model_dir / "card.md").read_text()
    assert f"{out['parameters']:,}" in card and f"{out['val_loss']:.4f}" in card and "token set `code`" in card
    assert f"{300 * 8 * 64:,}" in card and "preset: tiny" in card
    row = db.connect(token_home / "quark.db").execute("SELECT status, summary FROM runs WHERE name='tiny'").fetchone()
    assert row["status"] == "finished" and json.loads(row["summary"])["steps"] == 300
    listed = quark.json("models", "list")["models"]
    assert [(m["name"], m["parameters"], m["source"]) for m in listed] == [("tiny", out["parameters"], "run tiny")]
    assert [p.name for p in sorted((token_home / "runs" / "tiny").glob("step-*"))] == ["step-000150", "step-000300"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(token_home: Path, quark) -> None:
    args = ["--recipe", "tiny-cpu", "--data", "code", *TINY, "--set", "train.micro_batch=4", "--max-steps", "60",
            "--save-every", "10", "--eval-every", "20"]
    quark("pretrain", "--name", "whole", *args)
    reference = {e["step"]: e["loss"] for e in metrics(token_home, "whole")}

    env = {**os.environ, "OMP_NUM_THREADS": "1", "QUARK_HOME": str(token_home)}
    proc = subprocess.Popen([sys.executable, "-m", "quark", "pretrain", "--name", "cut", *args, "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = token_home / "runs" / "cut"
    deadline = time.monotonic() + 120
    while not (run_dir / "step-000010").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()
    saved = sorted(p.name for p in run_dir.glob("step-*"))
    assert saved and saved[-1] != "step-000060"  # killed mid-run, with a checkpoint to go back to
    assert not (token_home / "models" / "cut").exists()

    out = quark.json("pretrain", "--name", "cut", "--resume")
    assert out["resumed_from"].endswith(saved[-1]) and out["steps"] == 60
    resumed = metrics(token_home, "cut")
    assert [e["step"] for e in resumed] == list(range(1, 61))  # no step lost, none twice
    for entry in resumed:
        assert entry["loss"] == pytest.approx(reference[entry["step"]], abs=1e-6), entry["step"]
    assert [e["step"] for e in metrics(token_home, "cut", "val")] == [20, 40, 60]
    row = db.connect(token_home / "quark.db").execute("SELECT status FROM runs WHERE name='cut'").fetchone()
    assert row["status"] == "finished"


def test_resume_refuses_a_checkpoint_of_another_shape(token_home: Path, quark) -> None:
    quark("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "r", *TINY, "--set", "train.micro_batch=2",
          "--max-steps", "2", "--eval-every", "0")
    result = quark("pretrain", "--name", "r", "--resume", "--set", "model.n_embd=32", "--max-steps", "4", expect=1)
    assert "step-000002" in result.output and "different model shape" in result.output
    assert "Traceback" not in result.output


def test_activation_checkpointing_trains_the_same_numbers(token_home: Path, quark) -> None:
    args = ["--recipe", "tiny-cpu", "--data", "code", *TINY, "--set", "train.micro_batch=4", "--max-steps", "3",
            "--eval-every", "0", "--set", "train.grad_accum=2"]
    quark("pretrain", "--name", "plain", *args)
    quark("pretrain", "--name", "ckpt", *args, "--set", "train.activation_checkpointing=true")
    plain, ckpt = metrics(token_home, "plain"), metrics(token_home, "ckpt")
    assert [e["loss"] for e in ckpt] == pytest.approx([e["loss"] for e in plain], abs=1e-6)


@pytest.mark.parametrize("override, named", [
    ("train.bogus=1", "train.bogus"),
    ("train.micro_batch=many", "train.micro_batch"),
    ("optim.schedule=linear", "optim.schedule"),
    ("model.vocab_size=99", "model.vocab_size"),
    ("train.seq_len=100000", "train.seq_len"),
])
def test_recipe_override_errors_name_the_key(token_home: Path, quark, override: str, named: str) -> None:
    result = quark("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "x", "--set", override, expect=1)
    assert named in result.output and result.output.count("\n") == 1
    assert not (token_home / "runs" / "x").exists()


def test_recipe_file_with_wrong_type_names_file_and_key(token_home: Path, quark, tmp_path: Path) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model:\n  preset: tiny\ntrain:\n  seq_len: long\n")
    result = quark("pretrain", "--recipe", str(recipe), "--data", "code", "--name", "x", expect=1)
    assert str(recipe) in result.output and "train.seq_len" in result.output
    recipe.write_text("train:\n  max_step: 5\n")
    assert "train.max_step" in quark("pretrain", "--recipe", str(recipe), "--data", "code", "--name", "x",
                                     expect=1).output


def test_missing_token_shard_is_one_line_naming_the_file(token_home: Path, quark) -> None:
    shard = token_home / "tokens" / "code" / "train-00000.bin"
    shard.unlink()
    result = quark("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "x", expect=1)
    assert str(shard) in result.output and result.output.count("\n") == 1
    assert not (token_home / "runs" / "x").exists()


def test_recipes_ship_and_parse() -> None:
    blueprint = load_recipe("blueprint-700m")
    assert blueprint.train.strategy == "fsdp" and blueprint.train.activation_checkpointing
    assert load_recipe("small-gpu").model.preset == "small"
    tiny = load_recipe("tiny-cpu", ["optim.betas=0.8,0.99", "train.compile=true", "optim.lr=2e-3"])
    assert tiny.optim.betas == (0.8, 0.99) and tiny.train.compile is True and tiny.optim.lr == 2e-3
    with pytest.raises(QuarkError, match="unknown recipe 'nope'"):
        load_recipe("nope")


def test_schedules_warm_up_then_decay_to_the_floor() -> None:
    cosine = OptimConfig(lr=1.0, warmup=10, schedule="cosine", min_lr_ratio=0.1)
    assert cosine.lr_multiplier(0, 100) == pytest.approx(0.1) and cosine.lr_multiplier(9, 100) == 1.0
    assert cosine.lr_multiplier(55, 100) == pytest.approx(0.55) and cosine.lr_multiplier(100, 100) == pytest.approx(0.1)
    wsd = OptimConfig(lr=1.0, warmup=10, schedule="wsd", min_lr_ratio=0.0, decay_fraction=0.2)
    assert wsd.lr_multiplier(50, 100) == 1.0 and wsd.lr_multiplier(79, 100) == 1.0
    assert wsd.lr_multiplier(90, 100) == pytest.approx(0.5) and wsd.lr_multiplier(100, 100) == 0.0


def test_windows_are_a_deterministic_function_of_position() -> None:
    stream = torch.arange(1000).numpy()
    windows = TokenWindows(stream, 16, seed=3)
    first = windows.take(0, 200)
    assert torch.equal(first["input_ids"][:, 1:], first["labels"][:, :-1])
    # Samples are addressed by index: slices taken apart equal the whole, and a fresh reader agrees.
    assert torch.equal(torch.cat([windows.take(0, 7)["input_ids"], windows.take(7, 193)["input_ids"]]),
                       first["input_ids"])
    assert torch.equal(TokenWindows(stream, 16, seed=3).take(150, 5)["input_ids"], first["input_ids"][150:155])
    # One epoch covers every window once; the next one is shuffled differently.
    per_epoch = windows.windows_per_epoch
    starts = [windows.start_of(i) for i in range(per_epoch)]
    assert len({s // 16 for s in starts}) == per_epoch
    assert starts != [windows.start_of(per_epoch + i) for i in range(per_epoch)]
    # Shards read as one stream, windows spanning a boundary included.
    sharded = TokenWindows([stream[:333], stream[333:340], stream[340:]], 16, seed=3)
    assert torch.equal(sharded.take(0, 200)["input_ids"], first["input_ids"])
    other_seed = TokenWindows(stream, 16, seed=4)
    assert [other_seed.start_of(i) for i in range(per_epoch)] != starts
