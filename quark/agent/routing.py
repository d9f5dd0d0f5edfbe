"""From a router's label to the adapter that answers: what `NAME:auto` on the server and the
chat's `/route` run.

The router (quark.agent.router) says which specialist a turn wants; the specialists are LoRA
adapters of the base, loaded side by side (quark.inference.multi_lora). A label maps to the first
of its adapter names the model has (`code` → adapter `code`, `image` → `image-prompt`, `mesh` →
`mesh`); `general` and `needs-retrieval` are the generalist, the base itself, and so is a label
whose specialist the model lacks. A model with no router trained on it routes everything to the
base (mode "no-router"): the fallback the plan asks for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quark.agent.router import Decision, Router
from quark.agent.router_data import FALLBACK, LABELS
from quark.errors import QuarkError
from quark.home import Home

# Each label's specialist adapters, by name, first match wins; a label absent here is the base.
ROUTE_ADAPTERS: dict[str, tuple[str, ...]] = {"code": ("code",), "image": ("image-prompt", "image"),
                                              "mesh": ("mesh",)}
AUTO = "auto"


def adapter_for(label: str, adapters: Sequence[str]) -> str | None:
    """The adapter of `adapters` that answers a turn routed to `label` (None: the base)."""
    return next((name for name in ROUTE_ADAPTERS.get(label, ()) if name in adapters), None)


@dataclass
class Route:
    """What a turn ran with: the label, the adapter it maps to (None: the base), how it was chosen
    ("auto": the router; "forced": the user's /route; "setting": the conversation's adapter
    setting; "no-router": nothing to route with) and,
    when the router decided, its decision (scores, confidence, fallback)."""

    label: str
    adapter: str | None
    mode: str
    decision: Decision | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "adapter": self.adapter, "mode": self.mode}
        if self.decision is not None:
            out.update(confidence=round(self.decision.confidence, 4), fell_back=self.decision.fell_back,
                       predicted=self.decision.predicted,
                       scores={k: round(v, 4) for k, v in self.decision.scores.items()})
        return out

    def describe(self) -> str:
        """One short line for a status bar: `code → code (0.91)`, `general → base (forced)`."""
        target = self.adapter or "base"
        if self.mode in ("forced", "setting"):
            return f"{self.label} → {target} ({self.mode})"
        if self.decision is None:
            return f"{self.label} → {target} (no router)"
        fell = ", fell back" if self.decision.fell_back else ""
        return f"{self.label} → {target} ({self.decision.confidence:.2f}{fell})"


class AdapterRouter:
    """A router (or none; `name` is its folder under models/) over the adapters a model has
    loaded side by side."""

    def __init__(self, router: Router | None, adapters: Sequence[str], name: str | None = None) -> None:
        self.router, self.adapters, self.name = router, list(adapters), name

    def choices(self) -> list[str]:
        """What `/route` accepts: auto, every label, and every adapter by its own name."""
        return [AUTO, *LABELS, *(a for a in self.adapters if a not in LABELS)]

    def route_many(self, texts: Sequence[str]) -> list[Route]:
        if self.router is None:
            return [Route(FALLBACK, None, "no-router") for _ in texts]
        return [Route(d.label, adapter_for(d.label, self.adapters), AUTO, d) for d in self.router.route_many(texts)]

    def route(self, text: str) -> Route:
        return self.route_many([text])[0]

    def forced(self, choice: str) -> Route:
        """The route `/route CHOICE` pins: a label (its adapter, if the model has it) or an adapter."""
        if choice in self.adapters and choice not in LABELS:
            return Route(choice, choice, "forced")
        if choice not in LABELS:
            raise QuarkError(f"unknown route {choice!r}: choose one of {', '.join(self.choices())}")
        return Route(choice, adapter_for(choice, self.adapters), "forced")


def find_router(home: Home, base: str) -> str | None:
    """The newest router in the home trained on model `base` (models/<r>/router.json), if any."""
    root = home.root / "models"
    found: list[tuple[str, str]] = []
    for meta_path in sorted(root.glob("*/router.json")) if root.is_dir() else []:
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # an unreadable router is not a candidate; `quark route` names its problem
        if isinstance(meta, dict) and meta.get("base") == base:
            found.append((str(meta.get("created", "")), meta_path.parent.name))
    return max(found)[1] if found else None


def router_over(home: Home, name: str, model, tokenizer, base: str) -> Router:
    """Router `name`, reading its embeddings from `model` (the served or chatted base, full
    precision: an adapter or a quantized copy would be another vector space). Refuses a router
    trained on another model, or on other weights of this one."""
    folder = home.existing(home.model_dir(name), "router")
    meta = Router.read_meta(folder)
    if meta.get("base") != base:
        raise QuarkError(f"router {name!r} was trained on model {meta.get('base')!r}, not {base!r}")
    return Router.load(folder, model, tokenizer, home.model_dir(base))
