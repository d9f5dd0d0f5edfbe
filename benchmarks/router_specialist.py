"""Router over a specialist's base: how many held-out specialist asks reach the specialist.

Trains a router (`train_router`, what `quark finetune router --data` runs) over model `--base` with
the distinct asks of dataset `--data`'s train split labelled `--label`, then routes the distinct
asks of its val split at the default threshold. Also prints the held-out synthetic and
hand-written scores and what the router does with gibberish (it should not reach a specialist).
Prints only: the "Router: why held-out code asks fell back" section of RESULTS.md compares two
checkouts, so it is written by hand.

    QUARK_HOME=/tmp/codespec-home .venv/bin/python benchmarks/router_specialist.py --base base --data code
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from router import HANDWRITTEN, per_call_ms  # noqa: E402

from quark.agent.router import scores  # noqa: E402
from quark.agent.router_data import read_turns  # noqa: E402
from quark.agent.router_train import load_router, train_router  # noqa: E402
from quark.agent.routing import ROUTE_ADAPTERS  # noqa: E402
from quark.home import Home  # noqa: E402

GIBBERISH = ["asdf qwer zxcv", "hmm", "?", "banana", "the", "ok so", "lorem ipsum dolor sit amet", "xq zz kk",
             "blorp", "12345", "...", "yes no maybe"]


def distinct_asks(path: Path) -> list[str]:
    """The first user message of each row, once each, in file order."""
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return list(dict.fromkeys(row["prompt"] for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="The specialist's base model (under models/).")
    parser.add_argument("--data", required=True, help="The specialist's dataset (under data/, train/val.jsonl).")
    parser.add_argument("--label", default="code")
    parser.add_argument("--per-label", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(1)
    home = Home.open(None)
    folder = home.existing(home.dataset_dir(args.data), "dataset")
    train, val = distinct_asks(folder / "train.jsonl"), distinct_asks(folder / "val.jsonl")
    name = "router-specialist-bench"
    with tempfile.TemporaryDirectory() as tmp:
        labelled = Path(tmp) / "turns.jsonl"
        labelled.write_text("".join(json.dumps({"text": t, "label": args.label}) + "\n" for t in train))
        summary = train_router(home, name=name, base=args.base, data=str(labelled), per_label=args.per_label)
    try:
        router = load_router(home, name)
        held, hand = summary["figures"]["held_out"], scores(router, read_turns(HANDWRITTEN))
        routed_val, routed_train = router.route_many(val), router.route_many(train)
        confidences = sorted(d.confidence for d in routed_val)
        odd = router.route_many(GIBBERISH)
        cpu_ms = per_call_ms(router.route, val[:40], 3)[1]
    finally:
        shutil.rmtree(home.model_dir(name))
    print(f"router over {args.base!r}: {summary['train_turns']} turns ({len(train)} {args.label} asks) in "
          f"{summary['train_seconds']:.1f} s; threshold {router.threshold}")
    for title, s in (("held-out synthetic", held), ("hand-written", hand)):
        print(f"{title} ({s['turns']}): accuracy {s['accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f}, "
              f"fallback {s['fallback_rate']:.3f}")
    reached = {split: sum(d.label == args.label for d in routed) for split, routed in
               (("val", routed_val), ("train", routed_train))}
    print(f"held-out {args.label} asks reaching {args.label}: {reached['val']}/{len(val)} (median confidence "
          f"{confidences[len(confidences) // 2]:.2f}); train asks: {reached['train']}/{len(train)}")
    print(f"gibberish sent to a specialist: {sum(d.label in ROUTE_ADAPTERS for d in odd)}"
          f"/{len(odd)}: " + ", ".join(f"{t!r} → {d.label} ({d.confidence:.2f})" for t, d in zip(GIBBERISH, odd)))
    print(f"cost per routed turn: {cpu_ms:.2f} CPU ms (mean)")


if __name__ == "__main__":
    main()
