"""Router: cost per turn and accuracy/macro-F1 on held-out synthetic turns and the hand-written set.

Trains a router (`quark.agent.router_train.train_router`, what `quark finetune router` runs) over a
random-weight model of the `tiny` preset shape, then times `Router.route` one turn at a time, as
the chat does, against its baseline in the same run: the embedding forward alone (the head is the
router's only extra cost). Random weights make the accuracy a floor: the states of a trained
base separate intents better.

    .venv/bin/python benchmarks/router.py --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, save_preset_model  # noqa: E402
from _results import write_section  # noqa: E402

from quark.agent.router import FEATURES, scores  # noqa: E402
from quark.agent.router_data import read_turns, synthetic_turns  # noqa: E402
from quark.agent.router_train import load_router, train_router  # noqa: E402
from quark.home import Home  # noqa: E402

HANDWRITTEN = Path(__file__).parents[1] / "tests" / "data" / "router_handwritten.jsonl"


def per_call_ms(fn, texts: list[str], rounds: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) of fn(text), one text per call, over `rounds` passes of
    `texts`. On a shared machine the CPU time is the cost; the wall time adds the wait for a core."""
    for text in texts[:5]:
        fn(text)  # warm-up
    times = []
    cpu_start = time.process_time()
    for _ in range(rounds):
        for text in texts:
            start = time.perf_counter()
            fn(text)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, (time.process_time() - cpu_start) / len(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="Write the section of benchmarks/RESULTS.md.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.open(Path(tmp))
        save_preset_model(Path(tmp), args.preset, "base")
        summary = train_router(home, name="router", base="base")
        router = load_router(home, "router")
        _, held = synthetic_turns()
        hand = scores(router, read_turns(HANDWRITTEN))
        texts = [t.text for t in held[:40]]
        features = FEATURES[router.features]
        embed_ms = per_call_ms(lambda t: features(router.model, router.tokenizer, [t]), texts, args.rounds)
        route_ms = per_call_ms(router.route, texts, args.rounds)
    held_out = summary["figures"]["held_out"]
    rows = [("held-out synthetic turns (unseen templates)", held_out), ("hand-written set (tests/data)", hand)]
    table = "| set | turns | accuracy | macro-F1 | fallback rate (threshold 0.4) |\n|---|---:|---:|---:|---:|\n"
    table += "".join(f"| {name} | {s['turns']} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} | "
                     f"{s['fallback_rate']:.3f} |\n" for name, s in rows)
    text = (f"## Router\n\n`.venv/bin/python benchmarks/router.py --write` — {dt.date.today()}, 2-core CPU, shared\n\n"
            f"Machine: {machine()}. Base: random-weight `{args.preset}` preset model; head: MLP "
            f"({router.head.net[0].out_features} hidden) over the mean-pooled states of every layer "
            f"({router.head.mean.numel()} features, `{router.features}`), "
            f"trained on {summary['train_turns']} synthetic turns in {summary['train_seconds']:.1f} s (embedding "
            f"included). Chance is 0.200.\n\n{table}\n"
            f"| cost per turn (one turn per call) | CPU ms (mean) | wall ms (median) |\n|---|---:|---:|\n"
            f"| feature forward alone (baseline) | {embed_ms[1]:.2f} | {embed_ms[0]:.2f} |\n"
            f"| route (features + head + decision) | {route_ms[1]:.2f} | {route_ms[0]:.2f} |\n"
            f"| **ratio route / features** | **{route_ms[1] / embed_ms[1]:.3f}** | "
            f"**{route_ms[0] / embed_ms[0]:.3f}** |\n\nLoad average at the end: {os.getloadavg()[0]:.1f} on 2 cores "
            "(the wall times include waiting for a core).\n")
    print(text)
    if args.write:
        write_section("## Router", text)


if __name__ == "__main__":
    main()
