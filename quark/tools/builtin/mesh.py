"""generate_mesh: text to a 3D asset (quark.mesh.text_to_mesh), for the agent loop.

The model that writes the scene program is the home's config.toml `[tools.generate_mesh]` model
and adapter (`quark chat --mesh-model/--mesh-adapter` set them for the chat's tools); it is loaded
once per process. The tool writes only under the home's assets/ (a new, content-named file and
its preview; never a path the caller chooses) and records the asset in quark.db.

Risk: risky, as write_file and checkpoint_save are. The Risk rule is "changes something that
outlives the call", and a new asset file plus its assets row does, even though it overwrites
nothing (checkpoint_save only adds too, and is risky). It also costs a model load and a
generation. So the user confirms it in the TUI, and scripted chat runs it only with --allow-risky.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from quark.errors import QuarkError
from quark.mesh.request import FORMATS, MAX_FACES, MAX_PROMPT_CHARS
from quark.tools.base import Risk, Tool, ToolInput, ToolOutput
from quark.tools.context import ToolContext
from quark.tools.errors import ToolError


class GenerateMeshInput(ToolInput):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS,
                        description="What to make, e.g. 'a red mug' or 'a table with four legs'.")
    faces: int | None = Field(None, ge=4, le=MAX_FACES, description="Decimate to about this many faces.")
    format: Literal[FORMATS] = Field("glb", description="The mesh file's format.")
    seed: int = Field(0, ge=0, description="Sampling seed (greedy decoding ignores it).")


class GenerateMeshOutput(ToolOutput):
    asset_id: int
    path: str
    preview: str | None
    format: str
    faces: int
    watertight: bool
    volume: float | None
    bounds: list[list[float]] | None
    components: int
    genus: int | None
    summary: str  # one line: faces, watertight, volume, size


def generate_mesh(args: GenerateMeshInput, ctx: ToolContext) -> GenerateMeshOutput:
    settings = ctx.settings.generate_mesh
    if not settings.model:
        raise ToolError("no mesh model is set: give [tools.generate_mesh] model (and adapter) in config.toml, or "
                        "quark chat --mesh-model NAME --mesh-adapter A")
    from quark.mesh.text_to_mesh import generator, summary  # trimesh and manifold3d load on the first call

    try:
        made = generator(ctx.home, settings.model, settings.adapter, settings.device)
        asset = made.generate(args.prompt, faces=args.faces, fmt=args.format, seed=args.seed)
    except QuarkError as exc:
        raise ToolError(str(exc)) from None
    return GenerateMeshOutput(summary=summary(asset), **{name: asset[name] for name in GenerateMeshOutput.model_fields
                                                          if name != "summary"})


TOOLS = [
    Tool("generate_mesh", "Make a 3D model from a description: the mesh model writes a scene program that is "
         "validated, built, checked (watertight, volume) and saved as GLB with a PNG preview under assets/.",
         GenerateMeshInput, GenerateMeshOutput, generate_mesh, risk=Risk.RISKY, timeout_s=300),
]


def use_mesh_model(context: ToolContext, model: str | None, adapter: str | None) -> None:
    """Point this context's generate_mesh at `model` and `adapter` where given (what `quark chat
    --mesh-model/--mesh-adapter` does for the chat's tools), over config.toml's choice."""
    chosen = {key: value for key, value in (("model", model), ("adapter", adapter)) if value}
    if chosen:
        context.settings.generate_mesh = context.settings.generate_mesh.model_copy(update=chosen)
