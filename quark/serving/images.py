"""`/v1/images/generations` in OpenAI's shape, served beside the language model.

    POST /v1/images/generations  {"model", "prompt", "n", "size": "32x32", "response_format": "url"|"b64_json",
                                  extensions: "negative_prompt", "seed", "steps", "guidance", "sampler"}
      → {"created", "data": [{"url", "b64_json"?, "revised_prompt": null}]}
    GET  /v1/images/files/{id}.png  the generated PNG (an `assets` row of kind image)

Every image is saved under the home's assets/ with its row in quark.db, exactly as `quark image
generate` saves it (quark.image.generate). Generation runs in a worker thread, one request at a
time per model, so the event loop keeps answering. A bad request (size, steps, a prompt the
safety filter refuses) is a 400 in OpenAI's error shape; a refused prompt has the code
`content_policy_violation`, as OpenAI's API answers it.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quark import db
from quark.errors import QuarkError
from quark.image.generate import ImageModel
from quark.image.safety import PromptRefused
from quark.serving.protocol import APIError


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    prompt: str
    model: str | None = None
    n: int = Field(1, ge=1)
    size: str | None = None  # "WxH", square
    response_format: Literal["url", "b64_json"] = "url"
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    quality: str | None = None  # OpenAI's; one quality here
    style: str | None = None
    user: str | None = None


def _side(size: str | None) -> int | None:
    if size is None or size == "auto":
        return None
    width, x, height = size.partition("x")
    if not x or not width.isdigit() or width != height:
        raise APIError(400, f"Invalid value for 'size': {size!r}; expected a square 'NxN' such as '32x32'.",
                       param="size", code="invalid_value")
    return int(width)


class ImageService:
    """The image models a server holds, by name, each behind its own lock."""

    def __init__(self, models: list[ImageModel]) -> None:
        self.models = {m.name: m for m in models}
        self.db_path = models[0].home.db_path if models else None
        self.locks = {m.name: threading.Lock() for m in models}
        self.created = int(time.time())

    def __contains__(self, name: str) -> bool:
        return name in self.models

    def model_cards(self) -> list[dict[str, Any]]:
        return [{"id": name, "object": "model", "created": self.created, "owned_by": "quark", "kind": "image"}
                for name in self.models]

    def pick(self, name: str | None) -> ImageModel:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise APIError(400, f"Missing required parameter: 'model' (image models: {', '.join(self.models)}).",
                           param="model", code="missing_required_parameter")
        if name not in self.models:
            raise APIError(404, f"The image model '{name}' does not exist; this server's image models: "
                                f"{', '.join(self.models) or 'none'}.", param="model", code="model_not_found")
        return self.models[name]

    def generate(self, body: ImageGenerationRequest):
        model = self.pick(body.model)
        with self.locks[model.name]:
            return model, model.generate(body.prompt, negative=body.negative_prompt, steps=body.steps,
                                         guidance=body.guidance, seed=body.seed, size=_side(body.size), n=body.n,
                                         sampler=body.sampler)


def image_routes(images: ImageService) -> APIRouter:
    """The image routes (mounted under /v1 with the server's auth dependency)."""
    router = APIRouter()

    @router.post("/images/generations")
    async def generations(body: ImageGenerationRequest, request: Request) -> dict:
        try:
            model, assets = await run_in_threadpool(images.generate, body)
        except PromptRefused as exc:
            raise APIError(400, str(exc), param="prompt", code="content_policy_violation") from None
        except QuarkError as exc:
            raise APIError(400, str(exc), code="invalid_value") from None
        base = str(request.base_url).rstrip("/")
        data = []
        for asset in assets:
            item: dict[str, Any] = {"url": f"{base}/v1/images/files/{asset.id}.png", "revised_prompt": None}
            if body.response_format == "b64_json":
                with open(asset.path, "rb") as handle:
                    item["b64_json"] = base64.b64encode(handle.read()).decode("ascii")
            data.append(item)
        return {"created": int(time.time()), "model": model.name, "data": data}

    @router.get("/images/files/{asset_id}.png")
    async def image_file(asset_id: int) -> FileResponse:
        conn = db.connect(images.db_path)
        try:
            row = conn.execute("SELECT path FROM assets WHERE id = ? AND kind = 'image'", (asset_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise APIError(404, f"No image {asset_id}.", code="not_found")
        return FileResponse(row["path"], media_type="image/png")

    return router

