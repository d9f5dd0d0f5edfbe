"""Distillation through the one Trainer: a small student pulled towards a briefly pretrained
teacher on a real token set. At test scale the reliable facts are that the KL to the teacher and
the held-out loss fall, that an interrupted run resumes exactly, and that a student with another
tokenizer is refused; the three-way loss comparison at a longer run is in benchmarks/RESULTS.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from _train_data import TINY, corpus_home, metrics, one_thread  # noqa: F401
from conftest import Quark, make_tiny_model
from quark.home import Home
from quark.modelfolder import load_state, save_model
from quark.models.llm import LLM, LLMConfig

STEPS = 30
COMMON = ["--student", "small", "--teacher", "big", "--data", "code", "--set", "train.seq_len=64",
          "--set", "train.micro_batch=4", "--set", "optim.warmup=5", "--set", "optim.lr=3e-3",
          "--set", "train.eval_windows=8", "--max-steps", str(STEPS), "--save-every", "10", "--eval-every", "10"]


@pytest.fixture(scope="module")
def distill_home(corpus_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """tokens/code, a teacher `big` pretrained briefly on it and an untrained student `small`."""
    root = tmp_path_factory.mktemp("distill-home")
    for sub in ("tokenizers", "tokens"):
        shutil.copytree(corpus_home / sub, root / sub)
    torch.set_num_threads(1)
    Quark(root)("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "big", *TINY, "--max-steps", "60",
                "--set", "train.eval_every=0", "--set", "train.sample_tokens=0")
    home = Home.open(root)
    torch.manual_seed(0)
    small = LLM(LLMConfig(vocab_size=512, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=256))
    save_model(home.model_dir("small"), small, home.tokenizer_dir("tok") / "tokenizer.model")
    return root


@pytest.fixture
def quark(distill_home: Path) -> Quark:
    return Quark(distill_home)


def test_distilled_student_moves_towards_the_teacher(quark: Quark, distill_home: Path) -> None:
    out = quark.json("finetune", "distill", "--name", "kl", "--alpha", "0", "--temperature", "2", *COMMON)
    assert out["kind"] == "distill" and out["teacher"] == "big" and out["steps"] == STEPS
    assert out["val_kl"] < 0.6 * out["student_start_val_kl"], out
    assert out["val_ce"] < out["student_start_val_ce"] - 0.5, out
    assert out["teacher_val_ce"] < out["student_start_val_ce"]  # the teacher has something to teach
    kls = [e["val_kl"] for e in metrics(distill_home, "kl", "val")]
    assert len(kls) == 3 and kls[-1] < kls[0]
    folder = distill_home / "models" / "kl"
    assert "Distilled student" in (folder / "card.md").read_text() and (folder / "model.safetensors").is_file()


def test_interrupted_distillation_resumes_exactly(quark: Quark, distill_home: Path) -> None:
    quark("finetune", "distill", "--name", "mix", "--alpha", "0.5", *COMMON)
    reference = {e["step"]: e["loss"] for e in metrics(distill_home, "mix")}
    weights = load_state(distill_home / "models" / "mix" / "model.safetensors")
    run_dir = distill_home / "runs" / "mix"
    shutil.rmtree(run_dir / f"step-{STEPS:06d}")  # as if killed between the checkpoints at 20 and 30
    refused = quark("finetune", "distill", "--name", "mix", "--resume", "--teacher", "small", expect=1)
    assert "distils teacher 'big', not 'small'" in refused.output
    out = quark.json("finetune", "distill", "--name", "mix", "--resume", "--teacher", "big")
    assert out["resumed_from"].endswith("step-000020") and out["steps"] == STEPS
    resumed = metrics(distill_home, "mix")
    assert [e["step"] for e in resumed] == list(range(1, STEPS + 1))
    for entry in resumed:
        assert entry["loss"] == pytest.approx(reference[entry["step"]], abs=1e-6), entry["step"]
    again = load_state(distill_home / "models" / "mix" / "model.safetensors")
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_teacher_with_another_tokenizer_is_refused(quark: Quark, distill_home: Path) -> None:
    make_tiny_model(distill_home, "other", vocab_size=512)  # its own tokenizer, trained on other text
    result = quark("finetune", "distill", "--name", "bad", *COMMON[:2], "--teacher", "other", *COMMON[4:], expect=1)
    assert "use different tokenizers" in result.output and "Traceback" not in result.output
    assert not (distill_home / "models" / "bad").exists()


def test_bad_alpha_and_missing_token_set(quark: Quark) -> None:
    result = quark("finetune", "distill", "--name", "a", "--alpha", "1.5", *COMMON, expect=1)
    assert "distill.alpha must be in [0, 1]" in result.output
    args = [a if a != "code" else "nope" for a in COMMON]
    result = quark("finetune", "distill", "--name", "b", *args, expect=1)
    assert "no token set 'nope'" in result.output
