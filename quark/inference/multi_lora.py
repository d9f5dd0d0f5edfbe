"""Several LoRA adapters side by side on one base model, chosen per row of a batch.

Merging an adapter (quark.modelfolder.adapters.load_merged) makes a model of its own; serving
three adapters that way holds three models. Here the base stays as it is and each targeted
Linear layer is wrapped: its output is the base's plus, for each row, that row's adapter's
low-rank update,

    y[b] = base(x[b]) + scale_r · B_r (A_r x[b]),   r = the adapter row b names (none: no update),

the batched gather S-LoRA, punica and vLLM's multi-LoRA compute. Every adapter's A (rank, in) and
B (out, rank) are stacked into one tensor per layer, slot 0 all zeros (the base), ranks padded
with zeros to the largest and B pre-multiplied by its scale, so a step gathers each row's pair
and runs two batched matmuls. A batch whose rows all name one adapter (or none) skips the
gather: one plain low-rank matmul (or nothing). Switching adapters is a different slot number,
never a reload. The base layer may be anything Linear-shaped (nn.Linear, Int8Linear,
bitsandbytes), so quantized bases take adapters too.

`MultiLoRA.select(slots)` sets the rows' slots for the forwards inside it; outside any selection
the model is exactly the base (embeddings, the router and anything else sharing it see no adapter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn

from quark.errors import QuarkError
from quark.modelfolder.adapters import LoraWeights

BASE_SLOT = 0


class AdapterRows:
    """Which adapter slot each row of the current forward uses (shared by every wrapped layer)."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None  # (B,) slot per row, when rows differ
        self.uniform: int | None = BASE_SLOT  # the one slot of every row, when they agree


class LoRALinear(nn.Module):
    """A base Linear-shaped layer plus the stacked adapters of `rows`' slots."""

    def __init__(self, base: nn.Module, rows: AdapterRows, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.base, self.rows = base, rows
        self.register_buffer("lora_a", a, persistent=False)  # (slots, rank, in)
        self.register_buffer("lora_b", b, persistent=False)  # (slots, out, rank), scale folded in
        self.in_features, self.out_features = a.shape[2], b.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        rows = self.rows
        if rows.uniform == BASE_SLOT:
            return y
        if rows.uniform is not None:  # one adapter for the whole batch: no gather
            a, b = self.lora_a[rows.uniform], self.lora_b[rows.uniform]
            return y + (x @ a.T) @ b.T
        a, b = self.lora_a[rows.index], self.lora_b[rows.index]  # (B, rank, in), (B, out, rank)
        return y + torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2))


def _shape(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a Linear-shaped layer (nn.Linear, Int8Linear, bitsandbytes), else None."""
    fan_in, fan_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
    return (fan_in, fan_out) if isinstance(fan_in, int) and isinstance(fan_out, int) else None


class MultiLoRA:
    """The adapters wrapped into one model: their names by slot (slot 0 is the base)."""

    def __init__(self, names: Sequence[str], rows: AdapterRows) -> None:
        self.names, self.rows = list(names), rows

    @classmethod
    def attach(cls, model: nn.Module, adapters: Sequence[LoraWeights]) -> MultiLoRA:
        """Wrap, in place, every layer of `model` that any adapter targets. An adapter naming a
        layer the model lacks, or of another shape, is refused before anything is wrapped."""
        names = [a.name for a in adapters]
        if len(set(names)) != len(names):
            raise QuarkError(f"adapters named twice: {', '.join(names)}")
        targets = sorted({module for a in adapters for module in a.modules})
        device, dtype = model.norm.weight.device, model.norm.weight.dtype
        stacked = {}
        for target in targets:
            try:
                layer = model.get_submodule(target)
            except AttributeError:
                owner = next(a.name for a in adapters if target in a.modules)
                raise QuarkError(f"adapter {owner!r} targets {target!r}, which the model does not have") from None
            shape = _shape(layer)
            using = [(slot, a) for slot, a in enumerate(adapters, start=1) if target in a.modules]
            for _, a in using:
                lora_a, lora_b = a.modules[target]
                if shape is None or (lora_a.shape[1], lora_b.shape[0]) != shape:
                    raise QuarkError(f"adapter {a.name!r} does not fit {target!r}: its matrices are "
                                     f"{lora_a.shape[1]}→{lora_b.shape[0]}, the layer is "
                                     f"{'not a Linear layer' if shape is None else f'{shape[0]}→{shape[1]}'}")
            rank = max(a.modules[target][0].shape[0] for _, a in using)
            a_all = torch.zeros(len(adapters) + 1, rank, shape[0])
            b_all = torch.zeros(len(adapters) + 1, shape[1], rank)
            for slot, a in using:
                lora_a, lora_b = a.modules[target]
                a_all[slot, :lora_a.shape[0]] = lora_a
                b_all[slot, :, :lora_b.shape[1]] = lora_b * a.scale  # scaled in float32, then cast
            stacked[target] = (a_all.to(device, dtype), b_all.to(device, dtype))
        rows = AdapterRows()
        for target, (a_all, b_all) in stacked.items():
            model.set_submodule(target, LoRALinear(model.get_submodule(target), rows, a_all, b_all))
        return cls(names, rows)

    def slot(self, name: str | None) -> int:
        """The slot of adapter `name` (None: the base); an unknown name lists the loaded ones."""
        if name is None:
            return BASE_SLOT
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise QuarkError(f"no adapter {name!r} is loaded (adapters: {', '.join(self.names) or 'none'})") from None

    def name(self, slot: int) -> str | None:
        return None if slot == BASE_SLOT else self.names[slot - 1]

    @contextlib.contextmanager
    def select(self, slots: Sequence[int], device: torch.device) -> Iterator[None]:
        """Forwards inside run row b with adapter slot `slots[b]`; afterwards the model is the base."""
        rows = self.rows
        rows.uniform = slots[0] if all(s == slots[0] for s in slots) else None
        rows.index = None if rows.uniform is not None else torch.tensor(list(slots), dtype=torch.long, device=device)
        try:
            yield
        finally:
            rows.uniform, rows.index = BASE_SLOT, None
