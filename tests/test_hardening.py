"""The bad-input classes of issue #16, one test each: a clear line naming the file/field/flag,
exit 1 or 2, nothing half-written. (tests/test_fuzz_cli.py throws the same classes at every
command; these pin the cases the issue found.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from quark.errors import QuarkError
from quark.home import validate_name
from quark.inputs import read_stdin_text, read_text_file


@pytest.fixture
def model_home(tiny_model_home: Path, home: Path) -> Path:
    shutil.rmtree(home)
    shutil.copytree(tiny_model_home, home)
    return home


def one_error(result, *words: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_names_refuse_a_trailing_newline(quark, model_home: Path) -> None:
    for bad in ("q\n", "q\r", "q\n\n", "\nq"):
        with pytest.raises(QuarkError):
            validate_name(bad)
    quark("models", "quantize", "tiny", "--out", "q\n", expect=1)
    assert not [p for p in (model_home / "models").iterdir() if "\n" in p.name]


def test_non_utf8_and_endless_stdin_are_refused(quark, model_home: Path) -> None:
    one_error(quark("generate", "-m", "tiny", "-p", "-", input=b"caf\xe9", expect=1), "stdin", "UTF-8")
    one_error(quark("chat", "--model", "tiny", "--message", "-", input=b"\xff\xfe", expect=1), "stdin", "UTF-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QUARK_HOME": str(model_home)}
    with open("/dev/zero", "rb") as zero:  # a real endless stdin: the cap ends it, memory stays small
        out = subprocess.run([sys.executable, "-m", "quark", "generate", "-m", "tiny", "-p", "-"], stdin=zero,
                             capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "stdin is larger than" in out.stderr, out.stderr


def test_fifo_and_devices_are_refused_where_a_file_is_expected(quark, model_home: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    one_error(quark("checkpoint", "import", str(fifo), expect=1), "not a regular file")
    one_error(quark("tokenize", "inspect", str(fifo), "--tokenizer", "tiny-tok", expect=1), "not a regular file")
    one_error(quark("tokenize", "inspect", "/dev/zero", "--tokenizer", "tiny-tok", expect=1), "not a regular file")
    with pytest.raises(QuarkError, match="larger than"):
        (tmp_path / "big.txt").write_text("x" * 100)
        read_text_file(tmp_path / "big.txt", "file", max_bytes=10)
    with pytest.raises(QuarkError, match="larger than"):
        import io

        read_stdin_text(10, io.BytesIO(b"y" * 11))


@pytest.mark.parametrize("config, field", [({"n_embd": "64"}, "n_embd"), ({"n_layer": -2}, "n_layer"),
                                           ({"vocab_size": 0}, "vocab_size"),
                                           ({"tie_embeddings": "yes"}, "tie_embeddings")])
def test_config_json_with_wrong_types_names_file_and_field(quark, model_home: Path, config: dict, field: str) -> None:
    path = model_home / "models" / "tiny" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    one_error(quark("generate", "-m", "tiny", "-p", "x", expect=1), "config.json", field)


@pytest.mark.parametrize("generation, field", [({"max_new_tokens": "lots"}, "max_new_tokens"),
                                               ({"temperature": -1}, "temperature"), ({"top_p": 2}, "top_p")])
def test_generation_config_with_wrong_types_names_file_and_field(quark, model_home: Path, generation: dict,
                                                                 field: str) -> None:
    path = model_home / "models" / "tiny" / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **generation}))
    one_error(quark("generate", "-m", "tiny", "-p", "x", expect=1), "generation_config.json", field)


def test_hf_config_with_a_string_for_a_number_names_the_field(quark, model_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    quark("models", "export", "tiny", "--format", "hf", "--out", str(out))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "hidden_size": "64"}))
    one_error(quark("models", "import", str(out), "--name", "back", expect=1), "config.json", "n_embd")
    assert not (model_home / "models" / "back").exists()


def test_corrupt_run_json_on_resume_names_the_file(quark, home: Path) -> None:
    run = home / "runs" / "r"
    run.mkdir(parents=True)
    for content, words in ((b"{\"data\": ", ("run.json", "not valid JSON")), (b"[1]", ("run.json", "object")),
                           (b"{\"data\": 5}", ("run.json", "data")), (b"\xff", ("run.json", "UTF-8"))):
        (run / "run.json").write_bytes(content)
        one_error(quark("pretrain", "--name", "r", "--resume", expect=1), *words)
        one_error(quark("finetune", "sft", "--name", "r", "--resume", expect=1), "run.json")


def test_non_utf8_jsonl_for_finetune_names_file_and_line(quark, model_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_bytes(b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                      b'{"messages": "caf\xe9"}\n')
    one_error(quark("finetune", "sft", "--model", "tiny", "--data", str(data), "--name", "s", "--max-steps", "1",
                    expect=1), "chat.jsonl:2", "UTF-8")


def test_garbage_manifest_for_data_mix(quark, home: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    for content, word in ((b"\x00\xff garbage", "UTF-8"), (b"{", "not valid JSON"),
                          (json.dumps({"format": 1, "name": "b", "seed": "x", "ratios": {}, "chars": None,
                                       "rows_per_shard": 10, "inputs": []}).encode(), "seed")):
        manifest.write_bytes(content)
        one_error(quark("data", "mix", "--from-manifest", str(manifest), expect=1), "manifest", word)


def test_eval_report_output_that_is_a_folder(tmp_path: Path) -> None:
    """`eval report -o DIR` reaches plot_curves, which writes through atomic_file (the fuzz suite
    runs the command itself with a folder for -o)."""
    from quark.evaluation.report import plot_curves

    with pytest.raises(QuarkError, match="is a folder"):
        plot_curves({"r": {"loss": [(1, 2.0), (2, 1.5)]}}, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["eval", "perplexity", "-m", "tiny", "--data", "x", "--window", "0"],
                                  ["eval", "perplexity", "-m", "tiny", "--data", "x", "--batch-size", "0"],
                                  ["pretrain", "--name", "p", "--max-steps", "0"],
                                  ["pretrain", "--name", "p", "--save-every", "-1"],
                                  ["generate", "-m", "tiny", "-p", "x", "--temperature", "nan"],
                                  ["generate", "-m", "tiny", "-p", "x", "--seed", "-1"],
                                  ["checkpoint", "save", "c", "--conversation", str(2 ** 63)],
                                  ["demo", "--steps", "0"]])
def test_zero_negative_and_huge_numbers_are_refused_at_the_flag(quark, home: Path, argv: list[str]) -> None:
    result = quark(*argv, expect=2)
    assert f"'{argv[-2]}'" in result.stderr  # the flag is blamed, not a recipe file
    assert list(home.iterdir()) == []  # refused before anything was created


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child, before exec: SIGINT at its default and unblocked, as a shell leaves it. Both
    are inherited, and Python only turns SIGINT into KeyboardInterrupt when it starts with the
    default: a test process that ignores or blocks it would give a child that Ctrl-C cannot stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_a_run_killed_before_its_first_step_is_not_left_running(quark, tmp_path: Path) -> None:
    from _train_data import make_token_set

    home = tmp_path / "h"
    make_token_set(home)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QUARK_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "quark", "pretrain", "--name", "early", "--recipe", "tiny-cpu",
                             "--data", "code", "--set", "train.seq_len=64", "--max-steps", "5000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_ctrl_c_as_in_a_terminal)
    db = home / "quark.db"
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if sqlite3.connect(db).execute("SELECT 1 FROM runs WHERE name='early'").fetchone():
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # Ctrl-C as early as the row exists
    assert proc.wait(120) in (1, 130)
    status = sqlite3.connect(db).execute("SELECT status FROM runs WHERE name='early'").fetchone()[0]
    assert status in ("interrupted", "failed")


def test_demo_refuses_a_bad_option_before_its_first_stage(quark, home: Path) -> None:
    quark("demo", "--steps", "-3", expect=2)
    assert list(home.iterdir()) == []


def test_progress_bar_does_not_start_before_an_argument_error(quark, home: Path) -> None:
    result = quark("data", "ingest", str(home / "missing"), expect=1)
    one_error(result, "no such file")
