"""The model ids one server answers to: its model, each adapter beside it, and the routed one.

    NAME           the base model
    NAME:ADAPTER   the base with that LoRA adapter (run side by side: quark.inference.multi_lora)
    NAME:auto      the router picks the adapter per request (quark.agent.routing; the base when
                   the home has no router for NAME, or the router is unsure)

Requests naming different ids share the engine's batches: each row carries its own adapter.
An id the server does not have is a 404 in OpenAI's shape, naming what it does have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quark.agent.routing import AUTO, AdapterRouter, Route
from quark.serving.protocol import APIError


@dataclass(frozen=True)
class Target:
    """What a request's `model` names: its id, its adapter (None: the base), or routing."""

    id: str
    adapter: str | None = None
    auto: bool = False


class ServedModels:
    """The ids of one served language model and its adapters; routes `NAME:auto` requests."""

    def __init__(self, name: str, adapters: Sequence[str], router: AdapterRouter | None = None) -> None:
        self.name, self.adapters = name, list(adapters)
        self.router = router if router is not None else AdapterRouter(None, adapters)

    @property
    def routed(self) -> bool:
        """NAME:auto is offered when there is something to route to (adapters beside the base)."""
        return bool(self.adapters)

    def ids(self) -> list[str]:
        routed = [f"{self.name}:{AUTO}"] if self.routed else []
        return [self.name, *(f"{self.name}:{a}" for a in self.adapters), *routed]

    def cards(self, created: int) -> list[dict[str, Any]]:
        cards = [{"id": self.name, "object": "model", "created": created, "owned_by": "quark"}]
        cards += [{"id": f"{self.name}:{a}", "object": "model", "created": created, "owned_by": "quark",
                   "root": self.name, "parent": self.name, "adapter": a} for a in self.adapters]
        if self.routed:
            cards.append({"id": f"{self.name}:{AUTO}", "object": "model", "created": created, "owned_by": "quark",
                          "root": self.name, "parent": self.name, "routed": True,
                          "router": self.router.router is not None})
        return cards

    def resolve(self, model: str) -> Target:
        if model == self.name:
            return Target(model)
        base, _, suffix = model.partition(":")
        if base == self.name and suffix == AUTO and self.routed:
            return Target(model, auto=True)
        if base == self.name and suffix in self.adapters:
            return Target(model, suffix)
        if base == self.name and suffix:
            have = ", ".join(self.adapters) or "none"
            raise APIError(404, f"The model '{model}' does not exist: '{self.name}' has no adapter '{suffix}' "
                                f"(adapters: {have}).", param="model", code="model_not_found")
        raise APIError(404, f"The model '{model}' does not exist; this server serves {', '.join(self.ids())}.",
                       param="model", code="model_not_found")

    def answered_by(self, target: Target, routes: list[Route] | None) -> str:
        """The id a response names: the routed adapter's when every row went one way."""
        if not target.auto or not routes or len({r.adapter for r in routes}) != 1:
            return target.id
        adapter = routes[0].adapter
        return f"{self.name}:{adapter}" if adapter else self.name


def route_headers(routes: list[Route] | None) -> dict[str, str]:
    """X-Quark-Route / X-Quark-Adapter: each prompt's label and adapter ("base" for none)."""
    if not routes:
        return {}
    return {"X-Quark-Route": ",".join(r.label for r in routes),
            "X-Quark-Adapter": ",".join(r.adapter or "base" for r in routes)}
