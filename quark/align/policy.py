"""The language model an SFT or DPO run trains, and how its final checkpoint is published.

Full fine-tune: the base model itself; published as a model folder of its own.
LoRA / QLoRA: the base wrapped by peft (only adapter matrices train; QLoRA's base in NF4);
published as the adapter alone, in the PEFT layout, under the base's `adapters/`.

Checkpoints hold the trained module's whole state either way (Trainer's format), so a LoRA run
resumes exactly; publishing an adapter keeps only its lora_A / lora_B tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.nn as nn

from quark.align.lora import add_lora, quantize_nf4, save_adapter
from quark.align.run import Context, now
from quark.errors import QuarkError
from quark.modelfolder import load_model, load_state, save_derived
from quark.train import checkpoint

Publish = Callable[[Path, Path], None]


def load_policy(ctx: Context) -> tuple[nn.Module, Publish]:
    """The module to train (the LLM, with adapters injected when LoRA is on) and its publisher."""
    model = load_model(ctx.base_folder)
    lora = ctx.recipe.lora
    if not lora.enabled:
        return model, _publish_model(ctx)
    if lora.qlora:
        model = quantize_nf4(model, ctx.env.device)
    return add_lora(model, lora, ctx.base).get_base_model(), publish_adapter(ctx)


def _publish_model(ctx: Context) -> Publish:
    def publish(step: Path, folder: Path) -> None:
        model = checkpoint.load_llm(step, ctx.config)
        save_derived(folder, model, ctx.base_folder,
                     extra_config={"source_run": ctx.name, "base_model": ctx.base, "created": now()})
    return publish


def publish_adapter(ctx: Context) -> Publish:
    def publish(step: Path, folder: Path) -> None:
        peft = add_lora(load_model(ctx.base_folder), ctx.recipe.lora, ctx.base)
        target = peft.get_base_model()
        expected = {k for k in target.state_dict() if ".lora_" in k}
        trained = {k: v for k, v in load_state(step / "model.safetensors").items() if ".lora_" in k}
        if set(trained) != expected:
            raise QuarkError(f"checkpoint {step} does not hold this run's adapter "
                             f"(missing {sorted(expected - set(trained))[:3]})")
        target.load_state_dict(trained, strict=False)
        save_adapter(peft, folder)
    return publish
