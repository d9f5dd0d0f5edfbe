"""Image model speed: seconds per image, and training throughput against a minimal diffusers loop.

Sampling: the `image-tiny` UNet (random weights: speed does not depend on them) with a tiny Quark
text encoder, 25 DDIM steps with classifier-free guidance (two UNet rows per image), at 32 and
64 px, batch 1 and 8; seconds per image at the best of a few repeats.

Training: Quark's Trainer (quark.image.train: DiffusionBatches with per-sample noise, min-SNR-γ
weights, gradient clipping, the LR schedule, EMA after each step, metrics.jsonl) against the
shortest honest diffusers loop on the same UNet and batch: random noise and timesteps,
`DDPMScheduler.add_noise`, forward, MSE, backward, AdamW. Interleaved rounds, each loop's best
round, a round's figure being its median step time after warm-up.

    python benchmarks/image.py                 # print
    python benchmarks/image.py --write         # also record under benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine, tokenizer_of_size  # benchmarks/_common.py
from _results import write_section  # benchmarks/_results.py

from quark.image import shapes
from quark.image.data import CaptionedImages, CaptionTable, DiffusionBatches
from quark.image.recipe import load_image_recipe
from quark.image.train import Denoiser, _ema_step, _images_of, denoiser_loss
from quark.models.diffusion import (
    QuarkImagePipeline,
    QuarkTextEncoder,
    build_layout,
    build_unet,
    denoise,
    training_scheduler,
)
from quark.models.llm import LLM, LLMConfig
from quark.train.dist import Dist
from quark.train.trainer import Trainer

SECTION = "## Image model"


def text_encoder() -> QuarkTextEncoder:
    tok = tokenizer_of_size(1024)
    torch.manual_seed(0)
    llm = LLM(LLMConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=64))
    return QuarkTextEncoder(llm, tok, 64)  # a 600-piece tokenizer splits captions finely


def seconds_per_image(recipe, encoder: QuarkTextEncoder, size: int, batch: int, repeats: int) -> float:
    pipe = QuarkImagePipeline(unet=build_unet(recipe.model, encoder.hidden_size).eval(), scheduler=training_scheduler(),
                              text_encoder=encoder, layout=build_layout(recipe.model, encoder.hidden_size))
    pipe.set_progress_bar_config(disable=True)
    prompt = ["a large red circle in the center on a white background"] * batch
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(prompt, num_inference_steps=25, guidance_scale=3.0, size=size, seed=0, sampler="ddim", output_type="np")
        best = min(best, (time.perf_counter() - start) / batch)
    return best


def training_data(recipe, encoder: QuarkTextEncoder) -> DiffusionBatches:
    scenes = shapes.scenes(recipe.data.vocabulary(), 256, seed=0)
    images = CaptionedImages(torch.stack([torch.from_numpy(shapes.np_image(s, recipe.model.size)) for s in scenes]),
                             [s.caption for s in scenes])
    return DiffusionBatches(images, CaptionTable.build(encoder, images.captions), timesteps=1000, seed=0,
                            dropout=recipe.diffusion.caption_dropout)


def quark_run(recipe, encoder: QuarkTextEncoder, data: DiffusionBatches, steps: int) -> list[float]:
    torch.manual_seed(0)
    train = recipe.train
    train.max_steps, train.eval_every, train.save_every, train.device = steps, 0, 0, "cpu"
    with tempfile.TemporaryDirectory() as run_dir:
        model = Denoiser(build_unet(recipe.model, encoder.hidden_size), recipe,
                         build_layout(recipe.model, encoder.hidden_size))
        trainer = Trainer(model, recipe.optim, train, data,
                          env=Dist(rank=0, world=1, device=torch.device("cpu")), run_dir=Path(run_dir),
                          loss_fn=denoiser_loss, progress=False, on_step=_ema_step, items=_images_of, unit="img")
        trainer.fit()
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["time"] for line in lines if json.loads(line)["kind"] == "train"]


def reference_run(recipe, encoder: QuarkTextEncoder, data: DiffusionBatches, steps: int) -> list[float]:
    """The minimal diffusers loop (as in diffusers' train_text_to_image, less everything optional)."""
    torch.manual_seed(0)
    unet, layout = build_unet(recipe.model, encoder.hidden_size), build_layout(recipe.model, encoder.hidden_size)
    scheduler = training_scheduler()
    parameters = [*unet.parameters(), *(layout.parameters() if layout is not None else ())]
    opt = torch.optim.AdamW(parameters, lr=recipe.optim.lr, fused=True)
    batch = data.take(0, recipe.train.micro_batch)  # text states precomputed, as a cached-embedding loop has them
    stamps = []
    for _ in range(steps):
        noise = torch.randn_like(batch["pixels"])
        t = torch.randint(0, 1000, (batch["pixels"].shape[0],))
        noisy = scheduler.add_noise(batch["pixels"], noise, t)
        # the model's own forward (coordinate and layout channels, pooled text), as both loops run it
        pred = denoise(unet, noisy, t, batch["text"], batch["text_mask"], layout)
        loss = F.mse_loss(pred, batch["pixels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        stamps.append(time.time())
    return stamps


def per_second(stamps: list[float], warmup: int, items: int) -> float:
    return items / statistics.median(np.diff(stamps[warmup - 1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per round after 3 warm-up steps")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each training loop")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of each sampling configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--write", action="store_true", help="record the figures in benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_image_recipe("image-tiny", ["model.text_max_tokens=64"])
    encoder = text_encoder()
    host = machine()

    sampling = {}
    for size in (32, 64):
        for batch in (1, 8):
            sampling[size, batch] = seconds_per_image(recipe, encoder, size, batch, args.repeats)
            print(f"{size} px, batch {batch}: {sampling[size, batch]:.3f} s/image", flush=True)
    data, warmup, micro = training_data(recipe, encoder), 3, recipe.train.micro_batch
    quark, ref = [], []
    for _ in range(args.rounds):
        quark.append(per_second(quark_run(load_image_recipe("image-tiny", ["model.text_max_tokens=64"]), encoder, data,
                                          args.steps + warmup), warmup, micro))
        ref.append(per_second(reference_run(recipe, encoder, data, args.steps + warmup), warmup, micro))
    q, r = max(quark), max(ref)
    params = sum(p.numel() for p in build_unet(recipe.model, encoder.hidden_size).parameters())
    rows = ["| size | batch | seconds per image |", "|---:|---:|---:|"]
    rows += [f"| {size} px | {batch} | {sampling[size, batch]:.3f} |" for size, batch in sampling]
    train_rows = ["| loop | images/s |", "|---|---:|", f"| Quark Trainer | {q:,.1f} |",
                  f"| minimal diffusers loop | {r:,.1f} |", f"| **ratio Quark / minimal** | **{q / r:.3f}** |"]
    command = "python benchmarks/image.py " + " ".join(sys.argv[1:])
    text = (f"{SECTION}\n\n`{command.strip()}` — {dt.date.today().isoformat()}\n\n"
            f"Machine: {host}. UNet: the `image-tiny` recipe's ({params:,} parameters, widths "
            f"{recipe.model.channels}), random weights; text encoder a 2-layer, 64-wide Quark LLM.\n\n"
            f"Sampling, 25 DDIM steps with classifier-free guidance (best of {args.repeats}):\n\n" + "\n".join(rows)
            + f"\n\nTraining at {recipe.model.size} px, batch {micro}, fp32 (best of {args.rounds} interleaved rounds, "
              f"median step after {warmup} warm-up steps over {args.steps}):\n\n" + "\n".join(train_rows) + "\n")
    print(text)
    print("rounds (images/s): quark", [round(x, 2) for x in quark], "minimal", [round(x, 2) for x in ref])
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
