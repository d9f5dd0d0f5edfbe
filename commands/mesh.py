"""`quark mesh`: scene programs to meshes (build, generate) and tools for any mesh file
(info, simplify, convert, render)."""


import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import AdapterOption, DeviceOption, ModelOption
from quark.errors import QuarkError

app = group("mesh", "Text to 3D through a validated scene program, and tools for any mesh file.")

Faces = Annotated[Optional[int], typer.Option("--faces",
                                              help="Decimate to about this many faces (fast-simplification).")]
Format = Annotated[Optional[str], typer.Option("--format",
                                               help="glb, gltf, obj, stl or ply \\[default: -o's extension, else "
                                                    "glb].")]
Out = Annotated[Optional[Path], typer.Option("--output", "-o",
                                             help="Write here \\[default: a new file under the home's assets/].")]
Preview = Annotated[bool, typer.Option("--preview/--no-preview", help="Also write a PNG preview beside the mesh.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app)


def _summary(cli: Cli, what: str, result: dict) -> None:
    from quark.mesh.text_to_mesh import summary

    cli.print(f"{what}: {summary(result)}\n  → {result['path']}"
              + (f"\n  preview → {result['preview']}" if result.get("preview") else ""))


@quark_command(app, "build")
def build(cli: Cli,
          program: Annotated[Optional[Path], typer.Argument(help="A scene program (JSON).")] = None,
          example: Annotated[Optional[str], typer.Option("--example", help="Build a shipped example instead: "
                                                                           "bracket, hex-nut, mug, table.")] = None,
          output: Out = None, faces: Faces = None, fmt: Format = None, preview: Preview = True) -> dict:
    """Build a scene program into a mesh: booleans, repair, optional decimation, export, preview.

    Examples:

      quark mesh build --example mug -o mug.glb

      quark mesh build my-table.json --faces 2000 --format stl

      quark mesh build --example hex-nut --json   (writes under assets/, recorded in quark.db)
    """
    from quark.mesh.build import build_solid
    from quark.mesh.pipeline import Timings, write_asset
    from quark.mesh.program import load_example, load_program
    from quark.mesh.request import check_faces

    if (program is None) == (example is None):
        raise QuarkError("give a PROGRAM.json or --example NAME (one of them)")
    check_faces(faces)
    timings = Timings()
    with timings.stage("validate"):
        parsed = load_example(example) if example else load_program(program)
    with timings.stage("build"):
        solid = build_solid(parsed)
    result = write_asset(cli.home, parsed, solid, out=output, fmt=fmt, faces=faces, preview=preview, timings=timings,
                         extra={"source": f"example:{example}" if example else str(Path(program).resolve())})
    _summary(cli, f"built {example or program}", result)
    return result


@quark_command(app, "generate")
def generate(cli: Cli,
             prompt: Annotated[str, typer.Argument(help="What to make, e.g. 'a red mug'.")],
             model: ModelOption, adapter: AdapterOption = None, output: Out = None, faces: Faces = None,
             fmt: Format = None, seed: Annotated[int, typer.Option("--seed", min=0, help="Sampling seed.")] = 0,
             temperature: Annotated[float, typer.Option("--temperature", help="0 is greedy.")] = 0.0,
             max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest program, in tokens.")] = 1024,
             preview: Preview = True, device: DeviceOption = "auto") -> dict:
    """Text to 3D: the model writes a scene program (held to its JSON schema when the engine
    supports structured generation), Quark validates and builds it.

    Example:

      quark mesh generate "a blue table with four legs" --model base --adapter mesh --faces 4000 -o table.glb
    """
    from quark.mesh.pipeline import Timings
    from quark.mesh.request import check_request
    from quark.mesh.text_to_mesh import MeshGenerator

    check_request(prompt, faces, fmt)
    timings = Timings()
    with timings.stage("load"):
        made = MeshGenerator(cli.home, model, adapter=adapter, device=device)
    result = made.generate(prompt, faces=faces, fmt=fmt, out=output, seed=seed, temperature=temperature,
                           max_tokens=max_tokens, preview=preview, timings=timings)
    _summary(cli, f"generated {prompt!r}", result)
    return result


@quark_command(app, "info")
def info(cli: Cli, file: Annotated[Path, typer.Argument(help="A .glb, .gltf, .obj, .stl or .ply file.")]) -> dict:
    """Vertices, faces, watertight, volume, area, bounds, components, genus and parts of a mesh file.

    Example: quark mesh info mug.glb --json
    """
    from quark.mesh.info import file_info

    result = file_info(file)
    lo, hi = result["bounds"]
    parts = ", ".join(f"{p['name']} ({p['color']}, {p['faces']:,} faces)" for p in result["parts"])
    cli.print(f"{file} ({result['format']}, {result['bytes']:,} bytes)\n"
              f"  vertices {result['vertices']:,}  faces {result['faces']:,}  components {result['components']}\n"
              f"  watertight {result['watertight']}  volume {result['volume']}  area {result['area']:.6g}  "
              f"genus {result['genus']}\n  bounds {lo} .. {hi}\n"
              f"  parts: {parts}")
    return result


@quark_command(app, "simplify")
def simplify(cli: Cli, file: Annotated[Path, typer.Argument(help="The mesh file to simplify.")],
             output: Annotated[Path, typer.Option("--output", "-o",
                                                  help="Where to write the result (format by extension).")],
             faces: Faces = None,
             ratio: Annotated[Optional[float], typer.Option("--ratio",
                                                            help="Share of faces to keep, in (0, 1].")] = None) -> dict:
    """Decimate a mesh to a face budget (--faces) or a share of its faces (--ratio).

    Example: quark mesh simplify scan.ply --faces 8000 -o scan-8k.glb
    """
    from quark.mesh import export
    from quark.mesh.decimate import decimate
    from quark.mesh.repair import checks

    export.format_of(output)
    solid = export.load(file)
    before = len(solid.mesh.faces)
    start = time.perf_counter()
    simplified = decimate(solid, target_faces=faces, ratio=ratio)
    seconds = time.perf_counter() - start
    export.save(simplified, output)
    result = {"input": str(file), "path": str(output), "faces_before": before, **checks(simplified.mesh),
              "seconds": round(seconds, 4)}
    cli.print(f"{before:,} → {result['faces']:,} faces in {seconds:.3f} s, watertight {result['watertight']} → "
              f"{output}")
    return result


@quark_command(app, "convert")
def convert(cli: Cli, source: Annotated[Path, typer.Argument(help="Input mesh file.")],
            target: Annotated[Path, typer.Argument(help="Output file; the format comes from its extension.")]) -> dict:
    """Convert between GLB, glTF, OBJ, STL and PLY (by extension).

    Example: quark mesh convert mug.glb mug.stl
    """
    from quark.mesh import export
    from quark.mesh.repair import checks

    export.format_of(target)
    solid = export.load(source)
    export.save(solid, target)
    result = {"input": str(source), "path": str(target), "format": export.format_of(target), **checks(solid.mesh)}
    cli.print(f"{source} → {target} ({result['faces']:,} faces)")
    return result


@quark_command(app, "render")
def render(cli: Cli, file: Annotated[Path, typer.Argument(help="The mesh file to render.")],
           output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")],
           size: Annotated[int, typer.Option("--size", help="Width and height in pixels.")] = 512) -> dict:
    """Render a PNG preview on the CPU (Embree ray casting, shaded by normals and part colours).

    Example: quark mesh render mug.glb -o mug.png --size 768
    """
    from quark.mesh import export
    from quark.mesh.render import render_png

    if output.suffix.lower() != ".png":
        raise QuarkError(f"{output}: the preview is a PNG; give a .png path")
    solid = export.load(file)
    start = time.perf_counter()
    render_png(solid, output, size)
    result = {"input": str(file), "path": str(output), "size": size, "seconds": round(time.perf_counter() - start, 4)}
    cli.print(f"{file} → {output} ({size}×{size}, {result['seconds']:.2f} s)")
    return result
