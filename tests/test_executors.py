"""The executor options and StageRunner that `quark data ingest` and `quark tokenize encode` share."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from conftest import Quark
from quark.data.executors import ExecutorOptions, StageRunner

COMMANDS = {"data ingest": ("data", "ingest", "corpus"),
            "tokenize encode": ("tokenize", "encode", "--data", "words", "--tokenizer", "tok")}


@pytest.mark.parametrize("args, says", [
    (["--executor", "spark"], "error: unknown executor 'spark' (expected one of local, ray, slurm)"),
    (["--executor", "slurm"], "error: executor slurm needs a partition: give --slurm-partition"),
    (["--workers", "0"], "error: --workers must be at least 1, got 0"),
])
def test_both_commands_refuse_bad_executor_options_alike(quark: Quark, args: list[str], says: str) -> None:
    for command in COMMANDS.values():
        result = quark(*command, *args, expect=1)
        assert result.output.strip().startswith(says), result.output
        assert not any(quark.home.iterdir()), f"{command} wrote into the home"


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="a real Slurm is installed")
def test_slurm_partition_from_the_environment(quark: Quark, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "notes.txt").write_text("a note long enough to keep\n")
    monkeypatch.setenv("QUARK_SLURM_PARTITION", "cpu")
    result = quark("data", "ingest", str(tmp_path / "notes.txt"), "--executor", "slurm", expect=1)
    assert result.output.strip().splitlines()[-1] == \
        "error: executor slurm: `sbatch` is not on PATH (run from a Slurm login node)", result.output
    assert not (quark.home / "data").exists()


class Slow(PipelineStep):
    name = "slow"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        time.sleep(1.2)
        yield from data or []


def test_poll_moves_while_tasks_run(tmp_path: Path) -> None:
    calls: list[float] = []
    with StageRunner(ExecutorOptions(workers=1), tmp_path) as runner:
        started = time.monotonic()
        runner.run("slow", [Slow()], 1, poll=lambda: calls.append(time.monotonic() - started))
    assert calls[0] < 0.1  # at once, before the task starts
    assert len(calls) >= 3  # then while it runs, and once at the end
    assert calls[-1] >= 1.2
