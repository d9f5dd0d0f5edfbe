"""Where a model runs, and in which dtype: the one device choice for generate, serve, chat, eval
and training.

`--device auto` picks the first CUDA GPU when torch sees one and the CPU otherwise; `cuda` and
`cuda:N` insist on a GPU and fail in one line where there is none. On CUDA models run in bf16
(the tensor cores' fast path, with fp32's range); on the CPU in fp32, where bf16 matmuls are
slower and lose precision for nothing.
"""

from __future__ import annotations

import torch

from quark.errors import QuarkError

CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device, *, what: str = "--device", default_index: int = 0) -> torch.device:
    """`spec` ("auto" | "cpu" | "cuda" | "cuda:N") as a torch.device that exists on this machine.

    A bare "cuda" means GPU `default_index` (a torchrun process passes its LOCAL_RANK); `what`
    names the setting in errors (`--device`, `train.device`)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = str(spec).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise QuarkError(f"{what} {spec!r}: expected {CHOICES}")
    if not torch.cuda.is_available():
        raise QuarkError(f"{what} {spec}: no CUDA device is available here (use cpu or auto)")
    index = int(name[5:]) if ":" in name else default_index
    count = torch.cuda.device_count()
    if index >= count:
        raise QuarkError(f"{what} {spec}: there is no CUDA device {index} (this machine has {count})")
    return torch.device("cuda", index)


def default_dtype(device: torch.device) -> torch.dtype:
    """The dtype a model computes in on `device`: bf16 on CUDA, fp32 elsewhere."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
