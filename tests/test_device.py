"""Device choice (quark.device): one function for every front end, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quark.device import default_dtype, resolve_device
from quark.errors import QuarkError
from tests.chat_fixtures import copy_models


def test_cpu_and_auto_resolve_where_there_is_no_gpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert default_dtype(torch.device("cpu")) is torch.float32
    assert default_dtype(torch.device("cuda", 0)) is torch.bfloat16


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "mps0", ""])
def test_a_malformed_device_is_one_line(spec: str) -> None:
    with pytest.raises(QuarkError, match=r"--device .*expected auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_says_so(spec: str) -> None:
    with pytest.raises(QuarkError, match="no CUDA device is available here"):
        resolve_device(spec, what="train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_every_front_end_takes_device(quark, home: Path, tiny_model_home: Path) -> None:
    copy_models(tiny_model_home, home)
    for args in (["generate", "-m", "tiny", "-p", "x"], ["chat", "-m", "tiny", "--message", "hi"],
                 ["eval", "perplexity", "-m", "tiny", "--data", "none"], ["eval", "docqa", "-m", "tiny", "--builtin",
                                                                          "stdlib"]):
        out = quark(*args, "--device", "cuda", expect=1).output
        assert "--device cuda: no CUDA device is available here" in out and len(out.strip().splitlines()) == 1, args
    bad = quark("generate", "-m", "tiny", "-p", "x", "--device", "tpu", expect=1).output
    assert "--device 'tpu': expected auto, cpu, cuda or cuda:N" in bad
    cpu = quark.json("generate", "-m", "tiny", "-p", "x", "--max-tokens", "2", "--device", "cpu")
    assert cpu["device"] == "cpu"
