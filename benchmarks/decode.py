"""Decode speed on CPU: Quark's engine (fp32 and int8 weight-only) beside Hugging Face
transformers' `generate` on the very same weights.

The transformers model is a LlamaForCausalLM built from our config with our state dict copied in
(names map one to one under a "model." prefix, lm_head aside); the script checks that both give
the same greedy tokens before timing anything. Every configuration generates exactly the same
number of tokens (EOS ignored on both sides), greedy, unpadded prompts of equal length.

    python benchmarks/decode.py                       # tiny and small presets, batch 1 and 16
    python benchmarks/decode.py --presets tiny --threads 2
"""

from __future__ import annotations

import argparse
import copy
import functools
import time
from typing import NamedTuple

import torch
from _common import machine, preset_engine
from transformers import LlamaConfig, LlamaForCausalLM

from quark.inference import Engine, SamplingParams
from quark.modelfolder.quantized import quantize_int8, weight_bytes

# (prompt tokens, new tokens at batch 1, new tokens at batch 16): the small preset is ~125M
# parameters with a 65,536 vocabulary, so it gets short runs on a 2-core CPU.
LENGTHS = {"tiny": (64, 128, 64), "small": (32, 32, 16)}


def hf_twin(engine: Engine) -> LlamaForCausalLM:
    c = engine.model.config
    config = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=c.intermediate_size,
                         num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_head,
                         head_dim=c.head_dim, max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps,
                         rope_theta=c.rope_theta, tie_word_embeddings=c.tie_embeddings, attention_bias=False,
                         mlp_bias=False, bos_token_id=engine.tokenizer.bos_id, eos_token_id=engine.tokenizer.eos_id,
                         pad_token_id=engine.tokenizer.pad_id)
    model = LlamaForCausalLM(config).eval()
    state = {(k if k.startswith("lm_head.") else f"model.{k}"): v for k, v in engine.model.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weight names do not map: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


class Timing(NamedTuple):
    first: float  # wall seconds to the first token (prefill + one step)
    total: float  # wall seconds for the whole generation
    first_cpu: float  # the same two on this thread's CPU clock: with one torch thread it is the
    total_cpu: float  # work done, mostly immune to other processes on a shared machine
    tokens: list[int]  # row 0's tokens, to check both implementations agree

    def decode_rate(self, batch: int, new: int, cpu: bool = False) -> float:
        span = (self.total_cpu - self.first_cpu) if cpu else (self.total - self.first)
        return batch * (new - 1) / span


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def run_quark(engine: Engine, prompts: torch.Tensor, new: int) -> Timing:
    (wall, cpu), first, tokens = _clocks(), None, []
    for event in engine.stream(prompts.tolist(), SamplingParams(max_tokens=new, temperature=0)):
        first = first or _clocks()
        if event.index == 0:
            tokens += event.token_ids
    end = _clocks()
    return Timing(first[0] - wall, end[0] - wall, first[1] - cpu, end[1] - cpu, tokens)


@torch.inference_mode()
def run_hf(model: LlamaForCausalLM, prompts: torch.Tensor, new: int) -> Timing:
    def generate(n: int) -> tuple[float, float, torch.Tensor]:
        wall, cpu = _clocks()
        out = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=model.config.pad_token_id)
        end = _clocks()
        return end[0] - wall, end[1] - cpu, out

    first, first_cpu, _ = generate(1)
    total, total_cpu, out = generate(new)
    return Timing(first, total, first_cpu, total_cpu, out[0, prompts.shape[1]:].tolist())


def best(fn, repeats: int) -> Timing:
    """The least disturbed of `repeats` runs (the machine is shared)."""
    return min((fn() for _ in range(repeats)), key=lambda t: t.total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=sorted(LENGTHS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: least contention on a shared CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}\n")
    print("| preset | batch | implementation | weights MiB | first token ms | decode tokens/s | vs transformers "
          "| vs transformers, CPU time |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        engine = preset_engine(preset)
        hf = hf_twin(engine)
        int8 = Engine(quantize_int8(copy.deepcopy(engine.model)), engine.tokenizer, preset)
        int8.stop_ids = set()
        prompt_len, new1, new16 = LENGTHS[preset]
        torch.manual_seed(1)
        for batch in args.batches:
            new = new1 if batch == 1 else new16
            prompts = torch.randint(10, engine.model.config.vocab_size, (batch, prompt_len))
            run_quark(engine, prompts[:, :8], 2), run_hf(hf, prompts[:, :8], 2)  # warm up kernels
            results = {"transformers": best(functools.partial(run_hf, hf, prompts, new), args.repeats),
                       "quark": best(functools.partial(run_quark, engine, prompts, new), args.repeats),
                       "quark int8": best(functools.partial(run_quark, int8, prompts, new), args.repeats)}
            if results["quark"].tokens != results["transformers"].tokens:
                print(f"<!-- note: greedy tokens differ between quark and transformers ({preset}, batch {batch}) -->")
            sizes = {"transformers": weight_bytes(hf), "quark": weight_bytes(engine.model),
                     "quark int8": weight_bytes(int8.model)}
            hf_wall, hf_cpu = results["transformers"].decode_rate(batch,
                                                                  new), results["transformers"].decode_rate(batch, new,
                                                                                                            True)
            for name, t in results.items():
                print(f"| {preset} | {batch} | {name} | {sizes[name] / 2**20:.1f} | {t.first * 1000:.1f} | "
                      f"{t.decode_rate(batch, new):.1f} | {t.decode_rate(batch, new) / hf_wall:.2f}x | "
                      f"{t.decode_rate(batch, new, True) / hf_cpu:.2f}x |", flush=True)

if __name__ == "__main__":
    main()
