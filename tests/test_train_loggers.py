"""--logger csv|tensorboard|wandb beside metrics.jsonl, continued on resume; `quark eval report --run`
plots any run's curves."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from _train_data import TINY, corpus_home, metrics, one_thread, token_home  # noqa: F401
from quark.train.loggers import parse_loggers


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_csv_and_tensorboard_loggers_follow_metrics_jsonl(token_home: Path, quark) -> None:
    args = ["pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "logged", *TINY,
            "--set", "train.micro_batch=2", "--eval-every", "3", "--save-every", "3", "--logger", "csv"]
    quark(*args, "--max-steps", "3", "--logger", "tensorboard")
    run = token_home / "runs" / "logged"
    train = _csv(run / "metrics-train.csv")
    assert [int(row["step"]) for row in train] == [1, 2, 3]
    jsonl = metrics(token_home, "logged")
    assert [float(row["loss"]) for row in train] == pytest.approx([entry["loss"] for entry in jsonl])
    assert [int(row["step"]) for row in _csv(run / "metrics-val.csv")] == [3]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3]
    assert [event.value for event in events.Scalars("train/loss")] == pytest.approx([e["loss"] for e in jsonl])

    # resuming continues every log with no step twice
    quark("pretrain", "--name", "logged", "--resume", "--max-steps", "5")
    assert [int(row["step"]) for row in _csv(run / "metrics-train.csv")] == [1, 2, 3, 4, 5]

    plotted = quark.json("eval", "report", "--run", "logged")
    assert Path(plotted["png"]) == run / "curves.png" and (run / "curves.png").stat().st_size > 1000
    bad = quark("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "bad", *TINY, "--logger", "mlflow",
                "--max-steps", "1", expect=1)
    assert "unknown logger 'mlflow'" in bad.output


def test_wandb_logger_is_offline_or_says_how_to_install_it(token_home: Path, quark) -> None:
    args = ["pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "wb", *TINY, "--set", "train.micro_batch=2",
            "--max-steps", "2", "--eval-every", "0", "--logger", "wandb"]
    try:
        import wandb  # noqa: F401
    except ImportError:
        result = quark(*args, expect=1)
        assert "pip install wandb" in result.output and "Traceback" not in result.output
        assert not (token_home / "models" / "wb").exists()
        return
    quark(*args)
    assert list((token_home / "runs" / "wb" / "wandb").glob("offline-run-*"))


def test_logger_names_are_checked() -> None:
    assert parse_loggers("csv, tensorboard,csv") == ["csv", "tensorboard"]
    assert parse_loggers("") == []
