"""quark mesh: programs build closed solids, the mesh tools round-trip every format, bad input is
refused in one line with nothing written, and outputs are reproducible and recorded."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from quark import db
from quark.assets import list_assets
from quark.errors import QuarkError
from quark.mesh import export
from quark.mesh.build import build_solid
from quark.mesh.decimate import decimate, surviving_faces
from quark.mesh.program import example_names, load_example, parse_program, parse_program_text, program_schema
from quark.mesh.repair import checks
from quark.mesh.solid import Group, Solid

MUG = {"parts": [{"name": "mug", "color": "red", "shape": {"type": "difference", "children": [
    {"type": "cylinder", "radius": 1.0, "height": 2.0},
    {"type": "cylinder", "radius": 0.8, "height": 2.0, "translate": [0, 0, 0.2]}]}}]}


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _assets(home: Path) -> list:
    return list_assets(db.connect(home / "quark.db")) if (home / "quark.db").exists() else []


@pytest.mark.parametrize("name,genus", [("mug", 1), ("hex-nut", 1), ("bracket", 3), ("table", 0)])
def test_examples_build_watertight(name: str, genus: int) -> None:
    result = checks(build_solid(load_example(name)).mesh)
    assert result["watertight"] and result["volume"] > 0 and result["components"] == 1
    assert result["genus"] == genus  # the mug's handle, the nut's hole, the bracket's three holes


def test_examples_are_all_shipped_and_match_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert example_names() == ["bracket", "hex-nut", "mug", "table"]
    schema = program_schema()
    json.dumps(schema)
    for name in example_names():
        jsonschema.validate(json.loads(load_example(name).to_json()), schema)


def test_colours_survive_booleans() -> None:
    solid = build_solid(load_example("mug"))
    assert {g.rgba[:3] for g in solid.groups} == {(200, 40, 40)}  # the cut faces are the mug's colour
    bicolour = parse_program({"parts": [{"name": "a", "color": "red", "shape": {"type": "union", "children": [
        {"type": "box", "size": [1, 1, 1]},
        {"type": "sphere", "radius": 0.6, "color": "blue", "translate": [0.5, 0, 0]}]}}]})
    assert len(build_solid(bicolour).groups) == 2


def test_decimating_80k_faces_to_8k_stays_watertight() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=6)
    assert len(sphere.faces) == 81920
    small = decimate(Solid.single(sphere, Group("ball", (200, 40, 40, 255))), target_faces=8000)
    result = checks(small.mesh)
    assert 7600 <= result["faces"] <= 8000 and result["watertight"] and result["genus"] == 0
    assert abs(result["volume"] - sphere.volume) / sphere.volume < 0.01


def test_decimated_two_colour_sphere_keeps_each_face_its_colour() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=6)
    upper = (sphere.triangles_center[:, 2] > 0).astype(np.int64)
    two = Solid(sphere, upper, [Group("south", (200, 40, 40, 255)), Group("north", (40, 90, 200, 255))])
    small = decimate(two, target_faces=8000)
    z = small.mesh.triangles_center[:, 2]
    north = np.array([small.groups[g].name == "north" for g in small.face_group])
    assert 7600 <= len(small.mesh.faces) <= 8000 and small.mesh.is_watertight
    # the seam stays on the equator, within about one simplified face (their edges are ~0.05 here)
    assert north[z > 0.06].all() and not north[z < -0.06].any()
    assert 0.45 < north.mean() < 0.55


def test_surviving_faces_refuses_an_order_it_cannot_read() -> None:
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])  # a tetrahedron
    assert surviving_faces(faces, faces, np.empty((0, 2), dtype=np.int64), 4).tolist() == [0, 1, 2, 3]
    assert surviving_faces(faces, faces[::-1], np.empty((0, 2), dtype=np.int64), 4) is None  # → nearest-centroid


def test_glb_reloads_with_the_same_face_count(quark, tmp_path: Path) -> None:
    built = quark.json("mesh", "build", "--example", "mug", "-o", tmp_path / "mug.glb", "--faces", "900")
    assert built["faces"] <= 900 and (tmp_path / "mug.png").is_file()
    info = quark.json("mesh", "info", tmp_path / "mug.glb")
    assert info["faces"] == built["faces"] and info["watertight"] and info["parts"][0]["name"] == "red_mug"
    assert info["parts"][0]["color"] == "red"


def test_every_format_round_trips_through_convert_and_info(quark, tmp_path: Path) -> None:
    quark("mesh", "build", "--example", "table", "-o", tmp_path / "table.glb", "--no-preview")
    reference = quark.json("mesh", "info", tmp_path / "table.glb")
    for fmt in export.FORMATS:
        target = tmp_path / f"copy.{fmt}"
        quark("mesh", "convert", tmp_path / "table.glb", target)
        info = quark.json("mesh", "info", target)
        assert ((info["faces"], info["vertices"], info["watertight"])
                == (reference["faces"], reference["vertices"], True)), fmt
        assert info["volume"] == pytest.approx(reference["volume"], rel=1e-4), fmt
        assert np.allclose(info["bounds"], reference["bounds"], atol=1e-4), fmt
        back = tmp_path / f"back-{fmt}.glb"
        quark("mesh", "convert", target, back)
        assert quark.json("mesh", "info", back)["faces"] == reference["faces"]
    colours = {p["color"] for p in quark.json("mesh", "info", tmp_path / "copy.ply")["parts"]}
    assert colours == {"brown", "black"}  # PLY keeps face colours


def test_simplify_and_render_on_a_file(quark, tmp_path: Path) -> None:
    torus = trimesh.creation.torus(1.0, 0.3, major_sections=400, minor_sections=100)
    torus.export(tmp_path / "torus.stl")
    out = quark.json("mesh", "simplify", tmp_path / "torus.stl", "--faces", "8000", "-o", tmp_path / "small.ply")
    assert out["faces_before"] == 80000 and out["faces"] <= 8000 and out["watertight"] and out["genus"] == 1
    half = quark.json("mesh", "simplify", tmp_path / "small.ply", "--ratio", "0.5", "-o", tmp_path / "half.obj")
    assert half["faces"] <= 4000 and half["watertight"]
    quark("mesh", "render", tmp_path / "half.obj", "-o", tmp_path / "half.png", "--size", "64")
    from PIL import Image

    pixels = np.asarray(Image.open(tmp_path / "half.png"))
    assert pixels.shape == (64, 64, 3) and (pixels.std(axis=(0, 1)) > 10).all()  # something was drawn


def _refused(quark, *args: str, says: str, unwritten: Path | None = None) -> None:
    result = quark(*args, expect=1)
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    if unwritten is not None:
        assert not unwritten.exists()
        assert not [p for p in unwritten.parent.iterdir() if p.name.startswith(".tmp-")]


def test_bad_mesh_files_and_options_are_refused(quark, tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.glb"
    out.parent.mkdir()
    (tmp_path / "corrupt.glb").write_bytes(b"glTF" + bytes(range(200)))
    (tmp_path / "corrupt.stl").write_bytes(b"solid x\nfacet normal 0 0 1\n outer loop\n vertex 1 2\n")
    (tmp_path / "empty.ply").write_bytes(b"")
    (tmp_path / "mesh.xyz").write_text("1 2 3\n")
    _refused(quark, "mesh", "info", tmp_path / "corrupt.glb", says="corrupt.glb")
    _refused(quark, "mesh", "convert", tmp_path / "corrupt.stl", out, says="corrupt.stl", unwritten=out)
    _refused(quark, "mesh", "info", tmp_path / "empty.ply", says="empty")
    _refused(quark, "mesh", "info", tmp_path / "mesh.xyz", says="unknown mesh format .xyz")
    _refused(quark, "mesh", "info", tmp_path / "missing.glb", says="does not exist")
    quark("mesh", "build", "--example", "mug", "-o", tmp_path / "mug.glb", "--no-preview")
    _refused(quark, "mesh", "convert", tmp_path / "mug.glb", tmp_path / "out" / "mug.fbx",
             says="unknown mesh format .fbx")
    _refused(quark, "mesh", "build", "--example", "mug", "--faces", "0", "-o", out, says="--faces 0", unwritten=out)
    _refused(quark, "mesh", "simplify", tmp_path / "mug.glb", "--faces", "0", "-o", out,
             says="--faces 0", unwritten=out)
    _refused(quark, "mesh", "build", "--example", "mug", "--format", "fbx", says="unknown mesh format 'fbx'")
    _refused(quark, "mesh", "build", "--example", "teapot", says="unknown example 'teapot'")
    assert len(_assets(quark.home)) == 1  # only the good build was recorded


def _nested(count: int) -> dict:
    return {"type": "union", "children": [{"type": "sphere", "radius": 1.0, "translate": [i * 0.1, 0, 0]}
                                          for i in range(count)]}


@pytest.mark.parametrize("program,says", [
    ({"parts": [{"name": "a", "shape": {"type": "sphere", "radius": -1}}]}, "parts.0.shape.radius"),
    ({"parts": [{"name": "a", "shape": {"type": "union", "children": [_nested(16)] * 625}}]}, "10000 nodes"),
    ({"parts": [{"name": "a", "shape": {"type": "difference", "children": [
        {"type": "box", "size": [1, 1, 1]},
        {"type": "extrude", "height": 1, "points": [[0, 0], [1, 1], [2, 2]]}]}}]}, "not a volume"),
    ({"parts": [{"name": "a", "shape": {"type": "intersection", "children": [
        {"type": "box", "size": [1, 1, 1]}, {"type": "box", "size": [1, 1, 1], "translate": [5, 0, 0]}]}}]},
     "leaves nothing"),
    ({"parts": [{"name": "a", "shape": {"type": "torus", "radius": 1, "tube_radius": 0}}]}, "tube_radius"),
    ({"parts": [{"name": "a", "shape": {"type": "pyramid", "size": 1}}]}, "parts.0.shape"),
    ({"parts": [{"name": "a", "shape": {"type": "box", "size": [1, 1, 1], "colour": "red"}}]}, "colour"),
    ({"parts": []}, "parts"),
])
def test_bad_programs_are_refused(quark, tmp_path: Path, program: dict, says: str) -> None:
    if says == "10000 nodes":
        says = "nodes"
        assert sum(1 for _ in json.dumps(program).split('"type"')) - 1 > 10000
    out = tmp_path / "bad.glb"
    _refused(quark, "mesh", "build", _write(tmp_path / "bad.json", program), "-o", out, says=says, unwritten=out)
    assert not _assets(quark.home)


def test_unreadable_programs_are_refused(quark, tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "broken.json").write_text('{"parts": [')
    _refused(quark, "mesh", "build", tmp_path / "empty.json", says="empty")
    _refused(quark, "mesh", "build", tmp_path / "broken.json", says="not valid JSON")
    _refused(quark, "mesh", "build", tmp_path / "nowhere.json", says="does not exist")
    _refused(quark, "mesh", "build", says="PROGRAM.json or --example")


def test_same_program_gives_the_same_bytes(quark, tmp_path: Path) -> None:
    program = _write(tmp_path / "mug.json", MUG)
    for fmt in ("glb", "stl", "ply"):
        preview = ["--preview" if fmt == "glb" else "--no-preview"]
        quark("mesh", "build", program, "-o", tmp_path / f"a.{fmt}", "--faces", "300", *preview)
        quark("mesh", "build", program, "-o", tmp_path / f"b.{fmt}", "--faces", "300", *preview)
        assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes(), fmt
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_build_records_an_asset_under_the_home(quark, tmp_path: Path) -> None:
    result = quark.json("mesh", "build", _write(tmp_path / "mug.json", MUG), "--format", "stl")
    path = Path(result["path"])
    assert path.parent == quark.home.resolve() / "assets" and path.suffix == ".stl" and path.is_file()
    (row,) = _assets(quark.home)
    assert (row.id, row.kind, row.path, row.prompt, row.model) == (result["asset_id"], "mesh", str(path), None, None)
    assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert parse_program(row.params["program"]) == parse_program(MUG)
    assert row.params["preview"] == result["preview"] and Path(result["preview"]).is_file()
    assert row.params["checks"]["watertight"] is True


def _description(prompt: str) -> str:
    for prefix in ("a 3D model of ", "make ", "model ", "build ", "I want "):
        prompt = prompt.removeprefix(prefix)
    return prompt


def test_synth_mesh_pairs_hold_out_attribute_combinations(quark) -> None:
    meta = quark.json("data", "synth", "--kind", "mesh", "--name", "mesh", "--val-fraction", "0.1")
    folder = Path(meta["path"])
    rows = {split: [json.loads(line)["messages"] for line in (folder / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "val")}
    assert len(rows["train"]) == meta["counts"]["train"] > 1000 and len(rows["val"]) == meta["counts"]["val"] > 50
    for user, assistant in rows["val"][:30] + rows["train"][:30]:
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert checks(build_solid(parse_program(json.loads(assistant["content"]))).mesh)["watertight"]
    # held out by combination: no held-out object is in training under another wording...
    seen = {_description(user["content"]) for user, _ in rows["train"]}
    assert not [u["content"] for u, _ in rows["val"] if _description(u["content"]) in seen]
    # ...but each of its words (colours, kinds, counts, relations) is
    vocabulary = {word for text in seen for word in text.split()}
    assert all(set(_description(u["content"]).split()) <= vocabulary for u, _ in rows["val"])
    from quark.mesh.evaluate import held_out

    assert [c.prompt for c in held_out(0, 0.1)] == [u["content"] for u, _ in rows["val"]]


def test_every_part_is_named_after_its_colour_which_follows_the_name() -> None:
    """What lets the small mesh adapter get colours right (benchmarks/RESULTS.md, issue 13): every
    part of every training program, and of every shipped example, starts its name with its colour
    and gives the colour right after the name, in the order in which the schema (and so the
    constrained decoder) writes a part's fields."""
    from quark.mesh.synth import mesh_rows

    order = list(program_schema()["$defs"]["Part"]["properties"])
    assert order[:2] == ["name", "color"]
    programs = [json.loads(row["messages"][1]["content"]) for _, row in mesh_rows(0)]
    programs += [json.loads(load_example(name).to_json()) for name in example_names()]
    for program in programs:
        for part in program["parts"]:
            assert list(part) == [key for key in order if key in part] and list(part)[:2] == ["name", "color"], part
            assert part["name"].startswith(part["color"] + "_"), part


def test_eval_mesh_reference_scores_perfectly_and_chance_is_lower(quark) -> None:
    result = quark.json("eval", "mesh", "--reference", "--limit", "8")
    metrics = result["metrics"]
    assert metrics["cases"] == 8 and metrics["valid"] == metrics["built"] == 1.0
    assert all(v == 1.0 for v in metrics["adherence"].values() if v is not None)
    assert metrics["chance"]["kinds"] < 1.0 and metrics["chance"]["colors"] < 1.0
    assert metrics["chamfer_p2s"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < metrics["chamfer_p2p"] < 0.05 and metrics["chamfer_p2p_floor"] > 0
    stored = quark.json("eval", "report", "--task", "mesh")["results"]
    assert stored[-1]["metrics"]["built"] == 1.0


def test_per_part_adherence_credits_half_a_pair_the_exact_set_does_not() -> None:
    """A pair with its second part's kind and colour wrong fails the exact sets but keeps half per
    part; a reply with a part missing loses that part; parts are compared where they stand."""
    from quark.mesh.evaluate import adherence
    from quark.mesh.synth import pair

    reference = parse_program_text(pair("cone", "red", "on top of", "box", "blue"))
    half = parse_program_text(pair("cone", "red", "on top of", "sphere", "green"))
    swapped = parse_program_text(pair("box", "blue", "on top of", "cone", "red"))
    one = parse_program_text('{"parts": [{"name": "a", "color": "red", "shape": {"type": "cone", '
                             '"radius": 0.5, "height": 1.0}}]}')
    for reply, exact, by_part in ((half, 0.0, 0.5), (swapped, 1.0, 0.0), (one, 0.0, 0.5), (None, 0.0, 0.0),
                                  (reference, 1.0, 1.0)):
        scores = adherence([reference], [reply])
        assert (scores["kinds"], scores["colors"]) == (exact, exact)
        assert (scores["kinds_per_part"], scores["colors_per_part"]) == (by_part, by_part)


def test_chamfer_grows_with_the_difference() -> None:
    from quark.mesh.evaluate import chamfer

    a = build_solid(load_example("mug")).mesh
    moved = a.copy()
    moved.apply_translation([0.5, 0, 0])
    near, far = chamfer(a, a), chamfer(moved, a)
    assert near["p2s"] < 1e-6 < far["p2s"] and near["p2p"] < far["p2p"]


@pytest.fixture
def tiny_home(tiny_model_home: Path, tmp_path: Path) -> Path:
    home = tmp_path / "tiny-home"
    shutil.copytree(tiny_model_home, home)
    return home


def test_generate_and_eval_with_a_tiny_model(tiny_home: Path, tmp_path: Path) -> None:
    """A random model's reply is validated like any program. Under the schema grammar every reply
    the model finishes is a valid program (only a reply cut off at --max-tokens can fail to be);
    without the grammar an invalid reply is refused in one line. Either way nothing half-made is
    written, and what is written is recorded with its prompt, seed and model."""
    from conftest import Quark
    from quark.inference import Engine
    from quark.mesh.generate import constrained, generate_programs

    if constrained():
        from quark.mesh.generate import program_grammar
        from quark.mesh.synth import mesh_rows

        engine = Engine.load(tiny_home / "models" / "tiny")
        # what the training pairs teach is in the grammar's language, token by token, to its end...
        programs = [load_example(n).to_json() for n in example_names()]
        programs += [row["messages"][1]["content"] for _, row in list(mesh_rows(0))[:6]]
        for text in programs:
            matcher = engine.grammars.matcher(program_grammar())
            for token in engine.tokenizer.encode(text):
                matcher.accept(token)
            assert matcher.complete, text
        # ...and a random model's finished replies are all valid programs
        replies = generate_programs(engine, ["a red mug"] * 4, temperature=1.0, seed=5, max_tokens=200)
        assert all(g.program is not None for g in replies if g.finish_reason == "stop"), [g.error for g in replies]
        assert all("cut off" in g.error for g in replies if g.program is None)
    quark = Quark(tiny_home)
    out = tmp_path / "gen.glb"
    result = quark("mesh", "generate", "a red mug", "--model", "tiny", "--max-tokens", "200", "--temperature", "1",
                   "-o", out, "--seed", "5", "--json", expect=None)
    if result.exit_code == 0:
        (row,) = _assets(tiny_home)
        assert (row.prompt, row.seed, row.model, Path(row.path)) == ("a red mug", 5, "tiny", out.resolve())
        assert row.params["constrained"] is True and out.is_file()
    else:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]  # stdout: the JSON error
        assert result.exit_code == 1 and len(lines) == 1 and "nothing was written" in lines[0], result.output
        assert not out.exists() and not _assets(tiny_home)
        assert constrained() or "the model's program" in lines[0]
    metrics = quark.json("eval", "mesh", "--model", "tiny", "--limit", "2", "--max-new-tokens", "48")["metrics"]
    assert metrics["cases"] == 2 and set(metrics["adherence"]) == {"kinds", "count", "colors", "relation",
                                                                  "kinds_per_part", "colors_per_part"}
    if constrained():
        assert metrics["valid"] + metrics["cut_off"] == 1.0
    else:
        assert metrics["valid"] == 0.0 and metrics["constrained"] is False


def test_program_limits_are_checked_before_building() -> None:
    with pytest.raises(QuarkError, match="nested more than"):
        deep: dict = {"type": "sphere", "radius": 1}
        for _ in range(9):
            deep = {"type": "union", "children": [deep, {"type": "box", "size": [1, 1, 1]}]}
        parse_program({"parts": [{"name": "a", "shape": deep}]})
    with pytest.raises(QuarkError, match="triangles"):
        parse_program({"segments": 128, "parts": [{"name": f"p{i}", "shape": _nested(16)} for i in range(14)]})
