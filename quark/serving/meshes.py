"""`/v1/meshes`: text to a 3D asset over HTTP, beside the language model (Quark's own route; OpenAI
has none), shaped like the images route (quark.serving.images).

    POST /v1/meshes  {"prompt", "model"?, "adapter"?, "faces"?, "seed"?, "temperature"?,
                      "format": "glb"|"gltf"|"obj"|"stl"|"ply", "response_format": "file"|"b64_json"}
      file (default) → the mesh bytes (GLB: `model/gltf-binary`), its facts in headers:
                       X-Quark-Asset-Id, X-Quark-Faces, X-Quark-Watertight, X-Quark-Volume,
                       X-Quark-Bounds (JSON), X-Quark-Components, X-Quark-Preview-Url
      b64_json       → {"created", "model", "adapter", "data": [{"b64_json", "format", "asset_id", "url",
                       "preview_url", "faces", "watertight", "volume", "bounds", "components", "genus",
                       "program"}]}
    GET  /v1/meshes/files/{id}.{glb|gltf|obj|stl|ply|png}  a generated mesh, or its PNG preview

The mesh model is the served language model with its adapter (`quark serve --model base --adapter
mesh`), one of the adapters it serves side by side, or an adapter loaded for meshes only
(`--mesh-adapter mesh`, when it cannot run side by side). The served engine runs a mesh request
between the batcher's steps (`run_exclusive`), so it never races chat traffic; an adapter
loaded for meshes only has its own engine and lock. Every mesh is saved
under the home's assets/ with its row in quark.db, exactly as `quark mesh generate` saves it
(quark.mesh.text_to_mesh). A bad request is a 400 in OpenAI's error shape; a model whose program
does not parse or build is a 500 `generation_failed` with the one-line reason, and nothing is
written.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quark import db
from quark.errors import QuarkError
from quark.home import Home
from quark.inference import Engine
from quark.mesh.request import FORMATS, MAX_FACES, MAX_PROMPT_CHARS, check_request
from quark.mesh.text_to_mesh import MeshGenerator
from quark.serving.protocol import APIError

MEDIA_TYPES = {"glb": "model/gltf-binary", "gltf": "model/gltf+json", "obj": "model/obj", "stl": "model/stl",
               "ply": "application/x-ply", "png": "image/png"}
FACTS = ("faces", "watertight", "volume", "bounds", "components", "genus")


class MeshRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = None
    adapter: str | None = None
    faces: int | None = Field(None, ge=4, le=MAX_FACES)
    seed: int = Field(0, ge=0)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    format: Literal[FORMATS] = "glb"
    response_format: Literal["file", "b64_json"] = "file"
    user: str | None = None


def served_name(engine: Engine) -> tuple[str, str | None]:
    """(model, adapter) of an engine: Engine.load names an adapter's engine "model+adapter"."""
    model, _, adapter = engine.name.partition("+")
    return model, adapter or None


class MeshService:
    """The mesh generators a server holds: the served engine's (under its adapter, or none) and one
    per adapter loaded beside it."""

    def __init__(self, home: Home, engine: Engine, extra: dict[str, Engine] | None = None) -> None:
        self.home = home
        self.model, adapter = served_name(engine)
        self.shared = {adapter, *engine.adapters}  # the keys whose generators run on the served engine
        self.generators = {adapter: MeshGenerator(home, self.model, adapter=adapter, engine=engine)}
        for name in engine.adapters:  # adapters served side by side: the same weights, no second copy
            self.generators[name] = MeshGenerator(home, self.model, adapter=name, engine=engine.for_adapter(name))
        for name, other in (extra or {}).items():
            self.generators[name] = MeshGenerator(home, self.model, adapter=name, engine=other)

    def adapters(self) -> list[str]:
        return [name or "(none)" for name in self.generators]

    def pick(self, body: MeshRequest) -> str | None:
        if body.model is not None and body.model != self.model:
            raise APIError(404, f"The model '{body.model}' does not exist; this server makes meshes with "
                                f"'{self.model}'.", param="model", code="model_not_found")
        if body.adapter not in self.generators:
            raise APIError(404, f"The adapter '{body.adapter}' is not loaded; this server's mesh adapters: "
                                f"{', '.join(self.adapters())} (quark serve --mesh-adapter NAME).",
                           param="adapter", code="model_not_found")
        return body.adapter

    def generate(self, body: MeshRequest, run_exclusive: Callable[[Callable[[], Any]], Any]) -> dict[str, Any]:
        key = self.pick(body)
        made = self.generators[key]

        def work() -> dict[str, Any]:
            return made.generate(body.prompt, faces=body.faces, fmt=body.format, seed=body.seed,
                                 temperature=body.temperature)

        return run_exclusive(work) if key in self.shared else work()

    def file(self, asset_id: int, ext: str) -> Path:
        """A recorded mesh (its own extension) or its preview (.png)."""
        conn = db.connect(self.home.db_path)
        try:
            row = conn.execute("SELECT path, params FROM assets WHERE id = ? AND kind = 'mesh'", (asset_id,)).fetchone()
        finally:
            conn.close()
        path = None
        if row is not None:
            path = json.loads(row["params"] or "{}").get("preview") if ext == "png" else row["path"]
        if path is None or Path(path).suffix.lstrip(".") != ext or not Path(path).is_file():
            raise APIError(404, f"No mesh file {asset_id}.{ext}.", code="not_found")
        return Path(path)


def _headers(asset: dict[str, Any], base: str) -> dict[str, str]:
    headers = {f"X-Quark-{name.title()}": json.dumps(asset[name]) for name in FACTS}
    headers.update({"X-Quark-Asset-Id": str(asset["asset_id"]),
                    "X-Quark-Preview-Url": f"{base}/v1/meshes/files/{asset['asset_id']}.png",
                    "Content-Disposition": f'attachment; filename="{Path(asset["path"]).name}"'})
    return headers


def mesh_routes(meshes: MeshService, run_exclusive: Callable[[Callable[[], Any]], Any]) -> APIRouter:
    """The mesh routes (mounted under /v1 with the server's auth dependency). `run_exclusive` runs a
    function between the served engine's batch steps (Batcher.run_exclusive)."""
    router = APIRouter()

    @router.post("/meshes", response_model=None)
    async def meshes_create(body: MeshRequest, request: Request) -> Response | dict:
        try:
            check_request(body.prompt, body.faces, body.format)
        except QuarkError as exc:
            raise APIError(400, str(exc), param="prompt", code="invalid_value") from None
        try:
            asset = await run_in_threadpool(meshes.generate, body, run_exclusive)
        except QuarkError as exc:
            raise APIError(500, str(exc), type="server_error", code="generation_failed") from None
        base = str(request.base_url).rstrip("/")
        data = Path(asset["path"]).read_bytes()
        if body.response_format == "file":
            return Response(data, media_type=MEDIA_TYPES[asset["format"]], headers=_headers(asset, base))
        item = {"b64_json": base64.b64encode(data).decode("ascii"), "format": asset["format"],
                "asset_id": asset["asset_id"], "url": f"{base}/v1/meshes/files/{asset['asset_id']}.{asset['format']}",
                "preview_url": f"{base}/v1/meshes/files/{asset['asset_id']}.png",
                **{name: asset[name] for name in FACTS}, "program": asset["program"]}
        return {"created": int(time.time()), "model": meshes.model, "adapter": body.adapter, "data": [item]}

    @router.get("/meshes/files/{asset_id}.{ext}")
    async def mesh_file(asset_id: int, ext: str) -> FileResponse:
        if ext not in MEDIA_TYPES:
            raise APIError(404, f"No mesh file {asset_id}.{ext}: the extensions are {', '.join(MEDIA_TYPES)}.",
                           code="not_found")
        return FileResponse(meshes.file(asset_id, ext), media_type=MEDIA_TYPES[ext])

    return router
