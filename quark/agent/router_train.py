"""`quark finetune router` and `quark route`: train a router on a base model's embeddings, load one.

Training data: the synthetic turns of quark.agent.router_data (its held-out split, made from
templates never trained on, gives the reported figures) plus any labelled JSONL the user gives,
all of it trained on. The result goes to models/<name>/ in one rename.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from quark.agent.router import Router, fit_router, scores
from quark.agent.router_data import read_turns, synthetic_turns
from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.home import Home
from quark.modelfolder import load_model, load_tokenizer
from quark.retrieval.embedder import weights_fingerprint

DEFAULT_THRESHOLD = 0.4  # five labels: below this the head is barely more sure than a coin between two


def train_router(home: Home, *, name: str, base: str, data: str | None = None, threshold: float = DEFAULT_THRESHOLD,
                 per_label: int = 120, epochs: int = 300, seed: int = 0) -> dict[str, Any]:
    """Train and publish router `name` over model `base`; returns its summary (figures included)."""
    if data is not None and not data.strip():
        raise QuarkError("--data is empty: give a labelled JSONL file, or leave --data out")
    if per_label < 5:
        raise QuarkError(f"--per-label must be at least 5 (one turn per template needs a few), got {per_label}")
    if not 0.0 <= threshold < 1.0:
        raise QuarkError(f"--threshold must be in [0, 1), got {threshold}")
    base_folder = home.existing(home.model_dir(base), "model")
    output = home.model_dir(name)
    if output.exists() and not (output / "router.json").is_file():
        raise QuarkError(f"{output} exists and is not a router: pick another --name")
    user = read_turns(Path(data).expanduser()) if data is not None else []  # validated before any model is loaded
    train, held_out = synthetic_turns(per_label, seed=seed)
    model, tokenizer = load_model(base_folder), load_tokenizer(base_folder)
    router, seconds = fit_router(model, tokenizer, [*train, *user], threshold=threshold, epochs=epochs, seed=seed)
    figures = {"held_out": scores(router, held_out), "train": scores(router, train)}
    meta = {"base": base, "base_fingerprint": weights_fingerprint(base_folder), "seed": seed,
            "train_turns": len(train) + len(user), "user_turns": len(user), "user_data": data,
            "train_seconds": round(seconds, 3), "figures": figures,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    with atomic_dir(output) as tmp:
        router.save(tmp, meta)
    return {"router": name, "output": str(output), **meta, "labels": router.labels, "threshold": threshold}


def load_router(home: Home, name: str) -> Router:
    """Router `name` with its base model loaded (on the CPU: the head and one forward are tiny)."""
    folder = home.existing(home.model_dir(name), "router")
    meta = Router.read_meta(folder)
    base_folder = home.existing(home.model_dir(meta["base"]), "model")
    return Router.load(folder, load_model(base_folder), load_tokenizer(base_folder), base_folder)
