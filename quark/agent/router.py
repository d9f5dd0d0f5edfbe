"""The router: which specialist answers a turn (general, code, image, mesh, needs-retrieval).

A tiny MLP head over the base model's own states (`quark.retrieval.embedding.embed_layers`: the
mean-pooled states of every layer, token embeddings included, side by side), trained in seconds on
labelled turns. When its top probability is below the stored threshold the turn falls back to the
generalist: a wrong specialist costs more than a generalist's answer.

A router is a folder under models/ (no config.json, so it is not listed as a language model):

    models/<name>/router.safetensors   the head's weights and the feature standardisation
    models/<name>/router.json          labels, threshold, base model, its weights' fingerprint, figures
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from quark.agent.router_data import FALLBACK, LABELS, Turn
from quark.errors import QuarkError
from quark.models.llm import LLM
from quark.retrieval.embedder import weights_fingerprint
from quark.retrieval.embedding import embed_layers, embed_texts
from quark.tokenizer import Tokenizer

HEAD_FILE, META_FILE = "router.safetensors", "router.json"
# What the head reads, by the name router.json stores: "layers" since routers read every layer;
# "final" (the final states alone, what routers trained before then read) still loads.
FEATURES = {"layers": embed_layers, "final": embed_texts}


class RouterHead(nn.Module):
    """Standardise, one hidden layer, logits per label; mean/std travel with the weights."""

    def __init__(self, dim: int, hidden: int, n_labels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class Decision:
    """A routing decision: the chosen label, the head's top label and probability per label."""

    label: str
    predicted: str
    confidence: float
    scores: dict[str, float]
    fell_back: bool

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "predicted": self.predicted, "confidence": self.confidence,
                "fell_back": self.fell_back, "scores": self.scores}


class Router:
    """A trained head plus the model whose embeddings it reads."""

    def __init__(self, head: RouterHead, model: LLM, tokenizer: Tokenizer, labels: Sequence[str],
                 threshold: float, features: str = "layers") -> None:
        self.head, self.model, self.tokenizer = head.eval(), model.eval(), tokenizer
        self.labels, self.threshold, self.features = list(labels), threshold, features

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        features = torch.from_numpy(FEATURES[self.features](self.model, self.tokenizer, texts))
        return torch.softmax(self.head(features), dim=-1).numpy()

    def route(self, text: str) -> Decision:
        return self.route_many([text])[0]

    def route_many(self, texts: Sequence[str]) -> list[Decision]:
        decisions = []
        for row in self.probabilities(texts):
            top = int(row.argmax())
            fell_back = float(row[top]) < self.threshold
            decisions.append(Decision(FALLBACK if fell_back else self.labels[top], self.labels[top], float(row[top]),
                                      {label: float(p) for label, p in zip(self.labels, row)}, fell_back))
        return decisions

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write the head and router.json into `folder` (a temporary folder the caller renames)."""
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(folder / HEAD_FILE))
        meta = {"labels": self.labels, "threshold": self.threshold, "features": self.features,
                "dim": int(self.head.mean.numel()),
                "hidden": self.head.net[0].out_features, **meta}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def read_meta(folder: Path) -> dict[str, Any]:
        path = Path(folder) / META_FILE
        if not path.is_file():
            raise QuarkError(f"{folder} is not a router (no {META_FILE}); train one with quark finetune router")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise QuarkError(f"{path}: not valid JSON ({exc})") from None

    @classmethod
    def load(cls, folder: Path, model: LLM, tokenizer: Tokenizer, base_folder: Path) -> Router:
        """The router in `folder` over `model`; refuses a base whose weights changed since training
        (its embeddings are another vector space)."""
        meta = cls.read_meta(folder)
        if meta.get("base_fingerprint") != weights_fingerprint(base_folder):
            raise QuarkError(f"router {Path(folder).name!r} was trained on other weights of model {meta.get('base')!r}"
                             f" (fingerprint {meta.get('base_fingerprint')}); retrain it with quark finetune router")
        features = meta.get("features", "final")
        if features not in FEATURES:
            raise QuarkError(f"router {Path(folder).name!r} reads unknown features {features!r}; retrain it with "
                             "quark finetune router")
        head = RouterHead(meta["dim"], meta["hidden"], len(meta["labels"]))
        head.load_state_dict(load_file(str(Path(folder) / HEAD_FILE)))
        return cls(head, model, tokenizer, meta["labels"], float(meta["threshold"]), features)


def train_head(features: np.ndarray, targets: np.ndarray, n_labels: int, *, hidden: int = 128, epochs: int = 300,
               lr: float = 3e-3, weight_decay: float = 1e-2, seed: int = 0) -> RouterHead:
    """Full-batch AdamW on label-smoothed cross-entropy, class-balanced: seconds on a CPU for a few thousand turns."""
    torch.manual_seed(seed)
    x = torch.from_numpy(features)
    y = torch.from_numpy(targets).long()
    head = RouterHead(x.shape[1], hidden, n_labels)
    head.mean.copy_(x.mean(0))
    head.std.copy_(x.std(0).clamp_min(1e-6))
    counts = torch.bincount(y, minlength=n_labels).float()
    turn_weights = (counts.sum() / (n_labels * counts.clamp_min(1)))[y]
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    # Label smoothing keeps the probabilities below 1 on turns it has memorised, so that the
    # fallback threshold means something on turns it has not. The class balance weighs each turn's
    # whole loss, not CrossEntropyLoss(weight=...): that weighs the smoothing term by the *other*
    # labels' weights, so a label with many turns (1,268 code asks against 80 of each other label)
    # could never score above 0.41 on its own turns, and fell back below the 0.4 threshold.
    loss_fn = nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)
    for _ in range(epochs):
        optimizer.zero_grad()
        ((loss_fn(head(x), y) * turn_weights).sum() / turn_weights.sum()).backward()
        optimizer.step()
    return head.eval()


def scores(router: Router, turns: Sequence[Turn]) -> dict[str, float]:
    """Accuracy and macro-F1 of the head's top label (before any fallback) on labelled turns, and
    the accuracy of the final decision (fallbacks count as `general`)."""
    decisions = router.route_many([t.text for t in turns])
    truth = [t.label for t in turns]
    predicted = [d.predicted for d in decisions]
    return {"accuracy": _accuracy(truth, predicted), "macro_f1": macro_f1(truth, predicted, router.labels),
            "routed_accuracy": _accuracy(truth, [d.label for d in decisions]),
            "fallback_rate": sum(d.fell_back for d in decisions) / max(len(decisions), 1), "turns": len(turns)}


def _accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return sum(a == b for a, b in zip(truth, predicted)) / max(len(truth), 1)


def macro_f1(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels present in `truth` or `predicted`."""
    f1s = []
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(truth, predicted))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / max(len(f1s), 1)


def fit_router(model: LLM, tokenizer: Tokenizer, train: Sequence[Turn], *, threshold: float, hidden: int = 128,
               epochs: int = 300, seed: int = 0) -> tuple[Router, float]:
    """Embed the turns once, train the head; returns the router and the seconds it took."""
    if not 0.0 <= threshold < 1.0:
        raise QuarkError(f"--threshold must be in [0, 1), got {threshold}")
    started = time.perf_counter()
    index = {label: i for i, label in enumerate(LABELS)}
    features = embed_layers(model, tokenizer, [t.text for t in train])
    targets = np.array([index[t.label] for t in train])
    head = train_head(features, targets, len(LABELS), hidden=hidden, epochs=epochs, seed=seed)
    return Router(head, model, tokenizer, LABELS, threshold), time.perf_counter() - started
